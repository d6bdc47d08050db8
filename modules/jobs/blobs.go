//go:build unix

package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pathglob"
	"github.com/zeroci/zeroci/modules/blobclient"
)

// checksumLen is how many hex digits of a checksum a rendered cache key
// keeps (64 bits: collisions between a repository's keys are not a
// concern, and keys stay short).
const checksumLen = 16

// fetchExtract downloads the gzip-compressed tar under key (an artifact or
// a cache) to a temporary file, so its digest is checked before anything is
// extracted, then extracts it into the workspace. Sources come from the
// runner's sourceCache instead.
func (j *job) fetchExtract(key string) error {
	f, err := os.CreateTemp(j.r.tmpDir, j.a.LeaseID.String()+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := blobclient.Get(j.ctx, j.r.tr, key, f); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return extractTarGz(f, j.dir)
}

// upload stores a gzip-compressed tar of paths under key and returns the
// paths that do not exist (skipped). Nothing is stored when none exists.
func (j *job) upload(key string, paths []string) ([]string, error) {
	f, err := os.CreateTemp(j.r.tmpDir, j.a.LeaseID.String()+"-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	missing, err := writeTarGz(f, j.dir, paths)
	if err != nil || len(missing) == len(paths) {
		return missing, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if _, err := blobclient.Put(j.ctx, j.r.tr, key, "application/gzip", f); err != nil {
		return nil, err
	}
	return missing, nil
}

// saveArtifacts stores each artifact; a path that does not exist fails
// the job (a *missingPathError).
func (j *job) saveArtifacts() error {
	for _, a := range j.spec.Artifacts {
		for _, p := range a.Paths {
			if !exists(j.dir, p) {
				return &missingPathError{id: a.ID, path: p}
			}
		}
		key := contracts.ArtifactKey(j.spec.Job.Repo, j.spec.Job.Build, a.ID)
		missing, err := j.upload(key, a.Paths)
		if err != nil {
			return fmt.Errorf("saving artifact %s failed: %w", a.ID, err)
		}
		if len(missing) > 0 { // removed meanwhile
			return &missingPathError{id: a.ID, path: missing[0]}
		}
		j.note("saved artifact %s", a.ID)
	}
	return nil
}

// exists reports whether the workspace path p (a trailing "/" meaning a
// directory) exists, without following a final symlink.
func exists(root, p string) bool {
	fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(p, "/"))))
	if err != nil {
		return false
	}
	return !strings.HasSuffix(p, "/") || fi.IsDir()
}

// cacheState is a cache after restore: its rendered blob key and whether
// it was found.
type cacheState struct {
	spec contracts.CacheSpec
	key  string // blob key; "" when the key could not be rendered
	hit  bool
}

// restoreCaches renders each cache key and extracts the caches found. A
// cache that cannot be rendered or restored is a miss (noted in the log),
// never a failure.
func (j *job) restoreCaches() []cacheState {
	var out []cacheState
	for _, c := range j.spec.Caches {
		st := cacheState{spec: c}
		rendered, err := renderCacheKey(j.dir, c.Key)
		if err == nil {
			st.key = contracts.CacheBlobKey(j.spec.Job.Repo, rendered)
			err = contracts.CheckBlobKey(st.key)
		}
		if err != nil {
			j.note("cache %s: key %q: %v", c.ID, c.Key, err)
			st.key = ""
			out = append(out, st)
			continue
		}
		err = j.fetchExtract(st.key)
		switch {
		case err == nil:
			st.hit = true
			j.note("cache %s: restored %s", c.ID, rendered)
		case contracts.CodeOf(err) == contracts.CodeNotFound:
			j.note("cache %s: %s not found", c.ID, rendered)
		default:
			j.note("cache %s: restoring %s failed: %v", c.ID, rendered, err)
		}
		out = append(out, st)
	}
	return out
}

// saveCaches stores the caches that missed, from the paths that exist. A
// failure is noted in the log, not a job failure.
func (j *job) saveCaches(caches []cacheState) {
	for _, c := range caches {
		if c.hit || c.key == "" {
			continue
		}
		missing, err := j.upload(c.key, c.spec.Paths)
		switch {
		case err != nil:
			j.note("cache %s: saving failed: %v", c.spec.ID, err)
		case len(missing) == len(c.spec.Paths):
			j.note("cache %s: nothing to save (%s not found)", c.spec.ID, strings.Join(missing, ", "))
		default:
			j.note("cache %s: saved", c.spec.ID)
		}
	}
}

// renderCacheKey expands a cache key template in the workspace root:
// literal parts as they are, each {{ checksum "GLOB" }} as the first
// checksumLen hex digits of a SHA-256 over the regular files matching GLOB
// (symlinks are not followed), sorted by path, each contributing
// path NUL size NUL content.
func renderCacheKey(root, template string) (string, error) {
	parts, err := pathglob.ParseCacheKey(template)
	if err != nil {
		return "", err
	}
	var files []string
	var b strings.Builder
	for _, p := range parts {
		if p.Checksum == "" {
			b.WriteString(p.Literal)
			continue
		}
		if files == nil {
			if files, err = workspaceFiles(root); err != nil {
				return "", err
			}
		}
		sum, err := checksum(root, files, p.Checksum)
		if err != nil {
			return "", err
		}
		b.WriteString(sum)
	}
	return b.String(), nil
}

// workspaceFiles lists the regular files under root, slash-separated
// relative paths, sorted.
func workspaceFiles(root string) ([]string, error) {
	files := []string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the workspace: %w", err)
	}
	slices.Sort(files)
	return files, nil
}

// checksum hashes the files matching pattern (see renderCacheKey).
func checksum(root string, files []string, pattern string) (string, error) {
	h := sha256.New()
	for _, name := range files {
		if !pathglob.Match(pattern, name) {
			continue
		}
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			return "", fmt.Errorf("checksum: %w", err)
		}
		fi, err := f.Stat()
		if err == nil {
			io.WriteString(h, name+"\x00"+strconv.FormatInt(fi.Size(), 10)+"\x00")
			_, err = io.CopyN(h, f, fi.Size())
		}
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("checksum %s: %w", name, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:checksumLen], nil
}
