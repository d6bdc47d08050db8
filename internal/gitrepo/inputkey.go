package gitrepo

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"sort"
	"strings"

	"github.com/zeroci/zeroci/internal/pathglob"
)

// inputKeyVersion starts every hashed input; change it when the format
// below changes, so old keys stop matching.
const inputKeyVersion = "zeroci-inputkey-v1"

// InputKey is a job's input hash: two runs with equal keys would do the
// same work, so the second may be skipped. It is the lowercase hex SHA-256
// of, in order, each field written as a uvarint length and its bytes:
//
//   - the version string "zeroci-inputkey-v1";
//   - def, the job's canonical definition (the caller's stable encoding,
//     e.g. its JSON; it should include the inputs globs);
//   - the number of env entries, then each key and value, sorted by key;
//   - the number of globs, then each, sorted and deduplicated;
//   - the number of tree entries whose Path matches any glob
//     (pathglob.Match), then each one's Path, Mode and Blob, sorted by Path;
//   - the number of depKeys, then each, sorted (the dependencies' output keys).
//
// Only blob ids are read, so a file's content counts without being read;
// files outside the globs do not count. The order of env, globs, tree and
// depKeys does not matter. The inputs are not modified.
func InputKey(def []byte, env map[string]string, tree []Entry, globs []string, depKeys []string) string {
	var buf []byte
	field := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	count := func(n int) { buf = binary.AppendUvarint(buf, uint64(n)) }

	field(inputKeyVersion)
	field(string(def))

	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	count(len(keys))
	for _, k := range keys {
		field(k)
		field(env[k])
	}

	gs := slices.Compact(slices.Sorted(slices.Values(globs)))
	count(len(gs))
	for _, g := range gs {
		field(g)
	}

	var matched []Entry
	for _, e := range tree {
		if slices.ContainsFunc(gs, func(g string) bool { return pathglob.Match(g, e.Path) }) {
			matched = append(matched, e)
		}
	}
	slices.SortFunc(matched, func(a, b Entry) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), strings.Compare(a.Mode, b.Mode), strings.Compare(a.Blob, b.Blob))
	})
	count(len(matched))
	for _, e := range matched {
		field(e.Path)
		field(e.Mode)
		field(e.Blob)
	}

	ds := slices.Sorted(slices.Values(depKeys))
	count(len(ds))
	for _, d := range ds {
		field(d)
	}

	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}
