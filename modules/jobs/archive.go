//go:build unix

package jobs

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUnsafeArchive: an archive entry would land outside the workspace
// (absolute name, "..", a write through a symlink) or is of a kind the
// runner does not extract (hard link, device, fifo).
var ErrUnsafeArchive = errors.New("jobs: unsafe archive entry")

// extractTar extracts a tar stream into root. Names are slash-separated
// and relative; an entry named absolutely or with a ".." segment, one
// whose parent directory is a symlink (checked with Lstat at every level),
// and hard links and special files are refused with ErrUnsafeArchive. An
// existing file or symlink at an entry's place is replaced, never written
// through. Permission bits are kept (setuid, setgid and sticky are not);
// symlinks are created as they are, whatever they point to, since nothing
// is ever written through one.
func extractTar(r io.Reader, root string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if err := extractEntry(tr, h, root); err != nil {
			return err
		}
	}
}

// extractEntry extracts one entry.
func extractEntry(tr *tar.Reader, h *tar.Header, root string) error {
	switch h.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader:
		return nil // git archive's pax_global_header: metadata only
	}
	rel, err := entryPath(h.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil // the root itself
	}
	parent, base := path.Split(rel)
	if err := mkdirSafe(root, strings.TrimSuffix(parent, "/")); err != nil {
		return err
	}
	target := filepath.Join(root, filepath.FromSlash(parent), base)
	mode := fs.FileMode(h.Mode) & fs.ModePerm
	switch h.Typeflag {
	case tar.TypeDir:
		if err := mkdirSafe(root, rel); err != nil {
			return err
		}
		return os.Chmod(target, mode|0o700)
	case tar.TypeReg, tar.TypeRegA:
		if err := clearPlace(target); err != nil {
			return err
		}
		return writeFile(target, tr, mode)
	case tar.TypeSymlink:
		if err := clearPlace(target); err != nil {
			return err
		}
		if err := os.Symlink(h.Linkname, target); err != nil {
			return fmt.Errorf("extract %s: %w", rel, err)
		}
		return nil
	}
	return fmt.Errorf("%w: %q: entry type %q is not extracted", ErrUnsafeArchive, h.Name, h.Typeflag)
}

// entryPath checks an entry name and returns it cleaned, slash-separated.
func entryPath(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) || strings.Contains(name, "\\") {
		return "", fmt.Errorf("%w: %q: not a relative path", ErrUnsafeArchive, name)
	}
	for _, seg := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: %q: contains \"..\"", ErrUnsafeArchive, name)
		}
	}
	return path.Clean(name), nil
}

// mkdirSafe makes the directories of rel (slash-separated, clean) under
// root, refusing to pass through anything that is not a real directory.
func mkdirSafe(root, rel string) error {
	if rel == "" || rel == "." {
		return nil
	}
	cur := root
	for _, seg := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, seg)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return fmt.Errorf("extract: %w", err)
			}
		case err != nil:
			return fmt.Errorf("extract: %w", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %q: a symlink on the way to %q", ErrUnsafeArchive, seg, rel)
		case !fi.IsDir():
			return fmt.Errorf("%w: %q is not a directory on the way to %q", ErrUnsafeArchive, seg, rel)
		}
	}
	return nil
}

// clearPlace removes a file or symlink at target (never a directory), so
// that the new entry replaces it instead of writing through it.
func clearPlace(target string) error {
	fi, err := os.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("extract: %w", err)
	case fi.IsDir():
		return fmt.Errorf("%w: %s is a directory", ErrUnsafeArchive, target)
	}
	return os.Remove(target)
}

// writeFile creates target (which must not exist, nor be a symlink) with
// r's content and mode.
func writeFile(target string, r io.Reader, mode fs.FileMode) error {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(target, mode) // not subject to the umask
	}
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	return nil
}

// extractTarGz extracts a gzip-compressed tar stream into root.
func extractTarGz(r io.Reader, root string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("read archive: %w", err)
	}
	defer zr.Close()
	return extractTar(zr, root)
}

// missingPathError: an artifact path does not exist in the workspace.
type missingPathError struct{ id, path string }

func (e *missingPathError) Error() string {
	return fmt.Sprintf("artifact %s: %s not found", e.id, e.path)
}

// writeTarGz writes a gzip-compressed tar of paths (relative to root,
// slash-separated; a directory brings everything under it) to w. Symlinks
// are stored as symlinks and never followed, and a path whose parent is a
// symlink is refused, so nothing outside root ends up in the archive. It
// returns the paths that do not exist, which it skips.
func writeTarGz(w io.Writer, root string, paths []string) (missing []string, err error) {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	seen := make(map[string]bool)
	for _, p := range paths {
		rel := path.Clean(strings.TrimSuffix(p, "/"))
		ok, err := addTree(tw, root, rel, seen)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, p)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return missing, zw.Close()
}

// addTree adds rel and, for a directory, everything under it; it reports
// false when rel does not exist.
func addTree(tw *tar.Writer, root, rel string, seen map[string]bool) (bool, error) {
	if _, err := entryPath(rel); err != nil || rel == "." {
		return false, fmt.Errorf("%w: path %q", ErrUnsafeArchive, rel)
	}
	if dir := path.Dir(rel); dir != "." {
		if err := checkRealDirs(root, dir); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return false, err
		}
	}
	start := filepath.Join(root, filepath.FromSlash(rel))
	if _, err := os.Lstat(start); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name = filepath.ToSlash(name)
		if seen[name] {
			return nil
		}
		seen[name] = true
		return addEntry(tw, p, name)
	})
	if err != nil {
		return false, fmt.Errorf("archive %s: %w", rel, err)
	}
	return true, nil
}

// checkRealDirs checks that every level of rel under root is a real
// directory (not a symlink).
func checkRealDirs(root, rel string) error {
	cur := root
	for _, seg := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, seg)
		fi, err := os.Lstat(cur)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: %s is not a directory", ErrUnsafeArchive, rel)
		}
	}
	return nil
}

// addEntry writes one file, directory or symlink; other kinds are skipped.
func addEntry(tw *tar.Writer, p, name string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	var link string
	switch {
	case fi.Mode().IsRegular(), fi.IsDir():
	case fi.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	default:
		return nil
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name = name
	if fi.IsDir() {
		h.Name += "/"
	}
	h.Uname, h.Gname, h.Uid, h.Gid = "", "", 0, 0
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyN(tw, f, h.Size)
	return err
}
