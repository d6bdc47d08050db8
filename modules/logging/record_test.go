package logging

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

func TestFrames(t *testing.T) {
	now := time.Unix(1700000000, 123456789).UTC()
	var buf []byte
	buf = appendLine(buf, 1, now, contracts.StreamStderr, "héllo")
	buf = appendLine(buf, 2, now, contracts.StreamStdout, "")
	buf = appendCommit(buf, commitRec{attempt: 3, seq: 9, next: 3, dropped: 4, truncated: true, ctxState: ctxSealed, ctx: []byte("sealed")})
	buf = appendOpen(buf, openRec{attempt: 4, seq: 0, next: 3, masks: []byte("m")})

	fr := newFrameReader(bytes.NewReader(buf), 0, 64)
	typ, body, _, err := fr.next()
	if l, derr := decodeLine(body); err != nil || derr != nil || typ != recLine ||
		l != (contracts.LogLine{N: 1, Time: now, Stream: contracts.StreamStderr, Text: "héllo"}) {
		t.Fatalf("line 1: %c %+v %v %v", typ, l, err, derr)
	}
	typ, body, _, err = fr.next()
	if l, _ := decodeLine(body); err != nil || typ != recLine || l.N != 2 || l.Text != "" || l.Stream != contracts.StreamStdout {
		t.Fatalf("line 2: %+v %v", l, err)
	}
	typ, body, _, err = fr.next()
	if c, _ := decodeCommit(body); err != nil || typ != recCommit || c.attempt != 3 || c.seq != 9 || c.next != 3 ||
		c.dropped != 4 || !c.truncated || string(c.ctx) != "sealed" {
		t.Fatalf("commit: %+v %v", c, err)
	}
	typ, body, off, err := fr.next()
	if o, _ := decodeOpen(body); err != nil || typ != recOpen || o.attempt != 4 || o.next != 3 || string(o.masks) != "m" {
		t.Fatalf("open: %+v %v", o, err)
	}
	if _, _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}

	// A damaged byte, and every cut inside the last frame, are bad frames.
	bad := bytes.Clone(buf)
	bad[len(bad)-6] ^= 1
	for _, data := range [][]byte{bad, buf[:len(buf)-1], buf[:off+3], buf[:off+10]} {
		fr := newFrameReader(bytes.NewReader(data), 0, 64)
		for range 3 {
			fr.next()
		}
		if _, _, _, err := fr.next(); !errors.Is(err, errBadFrame) {
			t.Fatalf("%d bytes: %v, want a bad frame", len(data), err)
		}
	}
}

func TestTruncationLine(t *testing.T) {
	for limit, want := range map[int64]string{
		DefaultMaxJobBytes: "[zeroci] log truncated: the job's output passed 100 MiB; later lines were dropped",
		2048:               "[zeroci] log truncated: the job's output passed 2 KiB; later lines were dropped",
		1000:               "[zeroci] log truncated: the job's output passed 1000 bytes; later lines were dropped",
	} {
		if got := truncationLine(limit); got != want {
			t.Errorf("%d: %q, want %q", limit, got, want)
		}
	}
}
