package filelog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// A record on disk, little-endian:
//
//	[0:4)    n      uint32  length of the whole record, these 4 bytes and the CRC included
//	[4:12)   seq    uint64
//	[12:20)  time   int64   unix nanoseconds
//	[20]     idLen  uint8
//	[21:..)  id     idLen bytes
//	[..:n-4) body
//	[n-4:n)  crc    uint32  CRC32C of bytes [0:n-4)
const (
	headerLen  = 21
	trailerLen = 4
	minRecord  = headerLen + 1 + trailerLen // one-byte ID, empty body
	maxRecord  = headerLen + eventlog.MaxIDLen + eventlog.MaxBodyLen + trailerLen
)

// castagnoli is read-only after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordLen is the encoded size of an entry.
func recordLen(e eventlog.Entry) int { return headerLen + len(e.ID) + len(e.Body) + trailerLen }

// appendRecord encodes one record at the end of buf.
func appendRecord(buf []byte, seq, unixNano int64, e eventlog.Entry) []byte {
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(recordLen(e)))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(seq))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(unixNano))
	buf = append(buf, byte(len(e.ID)))
	buf = append(buf, e.ID...)
	buf = append(buf, e.Body...)
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// errBadRecord: bytes that are not a record (framing or checksum). Whether
// that is a torn tail or corruption is for the caller to decide.
var errBadRecord = errors.New("bad record")

// record is a decoded record; id and body alias the frame.
type record struct {
	seq      int64
	unixNano int64
	id       []byte
	body     []byte
}

// frameLen returns the length a frame claims, or errBadRecord if no record
// can have it.
func frameLen(b []byte) (int, error) {
	n := int(binary.LittleEndian.Uint32(b))
	if n < minRecord || n > maxRecord {
		return 0, fmt.Errorf("%w: length %d", errBadRecord, n)
	}
	return n, nil
}

// decodeRecord decodes one whole frame (exactly one record).
func decodeRecord(frame []byte) (record, error) {
	n := len(frame)
	if n < minRecord || int(binary.LittleEndian.Uint32(frame)) != n {
		return record{}, fmt.Errorf("%w: frame of %d bytes", errBadRecord, n)
	}
	idLen := int(frame[20])
	if idLen < 1 || idLen > eventlog.MaxIDLen || headerLen+idLen+trailerLen > n {
		return record{}, fmt.Errorf("%w: id length %d in a %d-byte record", errBadRecord, idLen, n)
	}
	if want, got := binary.LittleEndian.Uint32(frame[n-trailerLen:]), crc32.Checksum(frame[:n-trailerLen], castagnoli); want != got {
		return record{}, fmt.Errorf("%w: checksum %08x, stored %08x", errBadRecord, got, want)
	}
	return record{
		seq:      int64(binary.LittleEndian.Uint64(frame[4:])),
		unixNano: int64(binary.LittleEndian.Uint64(frame[12:])),
		id:       frame[headerLen : headerLen+idLen],
		body:     frame[headerLen+idLen : n-trailerLen],
	}, nil
}

// readFrame reads the next frame from r into buf (grown as needed). It
// returns io.EOF at a clean end, io.ErrUnexpectedEOF for a partial frame, or
// errBadRecord for an impossible length.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return buf, err // io.EOF or io.ErrUnexpectedEOF
	}
	n, err := frameLen(head[:])
	if err != nil {
		return buf, err
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf, head[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	return buf, nil
}

// recordAfter reports whether a valid record with a sequence number above
// seq starts anywhere in data: a bad record followed by one is corruption in
// the middle of a segment, not a torn tail. A frame found inside the bytes
// of a torn record's body would also need a plausible sequence number to
// count, so user data that happens to contain a record is not mistaken for
// one.
func recordAfter(data []byte, seq int64) bool {
	for i := 0; i+minRecord <= len(data); i++ {
		n, err := frameLen(data[i:])
		if err != nil || i+n > len(data) {
			continue
		}
		r, err := decodeRecord(data[i : i+n])
		if err == nil && r.seq > seq && r.seq <= seq+1+int64(len(data)/minRecord) {
			return true
		}
	}
	return false
}
