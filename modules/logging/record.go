package logging

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// A job's file is a sequence of records, each framed little-endian as
//
//	[0:4)    n     uint32  length of the whole frame, these 4 bytes and the CRC included
//	[4]      type  byte    recLine, recCommit, recOpen or recClose
//	[5:n-4)  body
//	[n-4:n)  crc   uint32  CRC32C of bytes [0:n-4)
//
// An append writes its stored lines, then one commit record; an open and a
// close are one record each. A line counts only once a commit record
// follows it, so a torn tail (lines without their commit, or a partial
// frame) is cut off when the file is opened again: those lines were never
// acknowledged.
const (
	recLine   = 'L' // n uint64 | time int64 (unix ns) | stream byte | text
	recCommit = 'C' // attempt uint32 | seq, next, dropped uint64 | truncated byte | context byte | sealed context
	recOpen   = 'O' // attempt uint32 | seq, next uint64 | sealed masks (JSON)
	recClose  = 'X' // JSON closeRecord

	frameOverhead = 4 + 1 + 4
	lineHeader    = 8 + 8 + 1
	commitHeader  = 4 + 8 + 8 + 8 + 1 + 1
	openHeader    = 4 + 8 + 8
	// maxFrame bounds a frame: far above the largest a job writes (a line
	// is at most 64 KiB; sealed masks at most contracts.MaxPayload).
	maxFrame = 64 << 20
)

// Context states in a commit record.
const (
	ctxSame    = 0 // the context is what the previous commit left
	ctxCleared = 1 // no context
	ctxSealed  = 2 // the sealed context follows
)

// Stream codes in line records.
const (
	streamStdout = 0
	streamStderr = 1
)

// castagnoli is read-only after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadFrame: bytes that are not a whole, intact frame.
var errBadFrame = errors.New("bad frame")

// beginFrame starts a frame of type typ at the end of buf; finishFrame
// completes it. It returns the frame's start.
func beginFrame(buf []byte, typ byte) ([]byte, int) {
	start := len(buf)
	return append(buf, 0, 0, 0, 0, typ), start
}

func finishFrame(buf []byte, start int) []byte {
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(buf)-start+4))
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

func appendLine(buf []byte, n int64, t time.Time, stream contracts.Stream, text string) []byte {
	buf, start := beginFrame(buf, recLine)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(n))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(t.UnixNano()))
	code := byte(streamStdout)
	if stream == contracts.StreamStderr {
		code = streamStderr
	}
	buf = append(buf, code)
	buf = append(buf, text...)
	return finishFrame(buf, start)
}

// commitRec is a commit record's content.
type commitRec struct {
	attempt   int
	seq, next int64
	dropped   int64
	truncated bool
	ctxState  byte
	ctx       []byte // sealed, with ctxSealed
}

func appendCommit(buf []byte, c commitRec) []byte {
	buf, start := beginFrame(buf, recCommit)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(c.attempt))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(c.seq))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(c.next))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(c.dropped))
	buf = append(buf, boolByte(c.truncated), c.ctxState)
	buf = append(buf, c.ctx...)
	return finishFrame(buf, start)
}

// openRec is an open record's content.
type openRec struct {
	attempt   int
	seq, next int64
	masks     []byte // sealed JSON list; empty for none
}

func appendOpen(buf []byte, o openRec) []byte {
	buf, start := beginFrame(buf, recOpen)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(o.attempt))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(o.seq))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(o.next))
	buf = append(buf, o.masks...)
	return finishFrame(buf, start)
}

func appendRaw(buf []byte, typ byte, body []byte) []byte {
	buf, start := beginFrame(buf, typ)
	buf = append(buf, body...)
	return finishFrame(buf, start)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// frameReader reads frames one after another.
type frameReader struct {
	r   *bufio.Reader
	off int64 // offset of the next frame
	buf []byte
}

func newFrameReader(r io.Reader, off int64, bufSize int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, bufSize), off: off}
}

// next returns the next frame's type and body (valid until the next call)
// and its offset. It returns io.EOF at a clean end and an error matching
// errBadFrame for a partial or damaged frame.
func (fr *frameReader) next() (typ byte, body []byte, off int64, err error) {
	var head [5]byte
	if _, err := io.ReadFull(fr.r, head[:]); err != nil {
		if err == io.EOF {
			return 0, nil, fr.off, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return 0, nil, fr.off, fmt.Errorf("%w: partial header at %d", errBadFrame, fr.off)
		}
		return 0, nil, fr.off, err
	}
	n := int(binary.LittleEndian.Uint32(head[:4]))
	if n < frameOverhead || n > maxFrame {
		return 0, nil, fr.off, fmt.Errorf("%w: length %d at %d", errBadFrame, n, fr.off)
	}
	if cap(fr.buf) < n {
		fr.buf = make([]byte, n, max(n, 2*cap(fr.buf)))
	}
	frame := fr.buf[:n]
	copy(frame, head[:])
	if _, err := io.ReadFull(fr.r, frame[5:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, nil, fr.off, fmt.Errorf("%w: partial frame at %d", errBadFrame, fr.off)
		}
		return 0, nil, fr.off, err
	}
	if want, got := binary.LittleEndian.Uint32(frame[n-4:]), crc32.Checksum(frame[:n-4], castagnoli); want != got {
		return 0, nil, fr.off, fmt.Errorf("%w: checksum at %d", errBadFrame, fr.off)
	}
	off = fr.off
	fr.off += int64(n)
	return frame[4], frame[5 : n-4], off, nil
}

// decodeLine decodes a line record's body; the text is copied.
func decodeLine(body []byte) (contracts.LogLine, error) {
	if len(body) < lineHeader {
		return contracts.LogLine{}, fmt.Errorf("%w: line record of %d bytes", errBadFrame, len(body))
	}
	l := contracts.LogLine{
		N:      int64(binary.LittleEndian.Uint64(body)),
		Time:   time.Unix(0, int64(binary.LittleEndian.Uint64(body[8:]))).UTC(),
		Stream: contracts.StreamStdout,
		Text:   string(body[lineHeader:]),
	}
	if body[16] == streamStderr {
		l.Stream = contracts.StreamStderr
	}
	return l, nil
}

// lineNumber returns a line record's number (0 for a damaged record).
func lineNumber(body []byte) int64 {
	if len(body) < lineHeader {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(body))
}

// lineText returns a line record's text without copying it.
func lineText(body []byte) ([]byte, error) {
	if len(body) < lineHeader {
		return nil, fmt.Errorf("%w: line record of %d bytes", errBadFrame, len(body))
	}
	return body[lineHeader:], nil
}

func decodeCommit(body []byte) (commitRec, error) {
	if len(body) < commitHeader {
		return commitRec{}, fmt.Errorf("%w: commit record of %d bytes", errBadFrame, len(body))
	}
	c := commitRec{
		attempt:   int(binary.LittleEndian.Uint32(body)),
		seq:       int64(binary.LittleEndian.Uint64(body[4:])),
		next:      int64(binary.LittleEndian.Uint64(body[12:])),
		dropped:   int64(binary.LittleEndian.Uint64(body[20:])),
		truncated: body[28] == 1,
		ctxState:  body[29],
	}
	if c.ctxState == ctxSealed {
		c.ctx = append([]byte(nil), body[commitHeader:]...)
	}
	return c, nil
}

func decodeOpen(body []byte) (openRec, error) {
	if len(body) < openHeader {
		return openRec{}, fmt.Errorf("%w: open record of %d bytes", errBadFrame, len(body))
	}
	return openRec{
		attempt: int(binary.LittleEndian.Uint32(body)),
		seq:     int64(binary.LittleEndian.Uint64(body[4:])),
		next:    int64(binary.LittleEndian.Uint64(body[12:])),
		masks:   append([]byte(nil), body[openHeader:]...),
	}, nil
}
