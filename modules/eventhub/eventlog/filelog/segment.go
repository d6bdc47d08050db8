package filelog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
)

// indexEvery: a segment remembers the offset of every indexEvery-th record,
// so a read starts scanning at most indexEvery-1 records before its first.
const indexEvery = 256

// segment is one file of consecutive records, named by its first sequence
// number. The file stays open for the Log's life; ReadAt is safe for
// concurrent readers while the writer appends past the published size.
type segment struct {
	first int64
	path  string
	f     *os.File

	// Published state, guarded by Log.mu: readers see count records in
	// size bytes, all fsynced. Written by Open and by the writer after it
	// fsynced.
	count    int64
	size     int64
	lastTime int64   // unix nanoseconds of the newest record; 0 while empty
	index    []int64 // index[k]: offset of record first+k*indexEvery
}

const segmentSuffix = ".seg"

// segmentName is the file name of the segment starting at first: 20 digits,
// so names sort like their numbers.
func segmentName(first int64) string { return fmt.Sprintf("%020d%s", first, segmentSuffix) }

// parseSegmentName returns the first sequence number a segment file name
// stands for, and false for any other file.
func parseSegmentName(name string) (int64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	first, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || first < 1 {
		return 0, false
	}
	return first, true
}

// scan reads the segment from the start, filling count, size, lastTime and
// index, and calls fn for every good record. It stops at the first bad
// record and returns why in bad (size is then its offset); it fails with
// ErrCorrupt if a record is intact but out of sequence, which no torn write
// explains.
func (s *segment) scan(fn func(record)) (bad error, err error) {
	r := bufio.NewReaderSize(s.f, 1<<20)
	var buf []byte
	for {
		buf, err = readFrame(r, buf)
		switch {
		case err == io.EOF:
			return nil, nil
		case err == io.ErrUnexpectedEOF:
			return errors.New("partial record at the end of the file"), nil
		case errors.Is(err, errBadRecord):
			return err, nil
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", s.path, err)
		}
		rec, err := decodeRecord(buf)
		if err != nil {
			return err, nil
		}
		if want := s.first + s.count; rec.seq != want {
			return nil, fmt.Errorf("%w: %s at offset %d: record %d where %d belongs", eventlog.ErrCorrupt, s.path, s.size, rec.seq, want)
		}
		if s.count%indexEvery == 0 {
			s.index = append(s.index, s.size)
		}
		s.count++
		s.size += int64(len(buf))
		s.lastTime = rec.unixNano
		fn(rec)
	}
}

// read appends to out the records from seq from on, at most n of them,
// stopping early once their bodies use up *budget. The caller holds
// Log.mu for reading and has checked from lies in the segment.
func (s *segment) read(from int64, n int, budget *int, out []eventlog.Record) ([]eventlog.Record, error) {
	k := (from - s.first) / indexEvery
	off, seq := s.index[k], s.first+k*indexEvery
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, off, s.size-off), 64<<10)
	var buf []byte
	for end := s.first + s.count; seq < end && n > 0 && *budget > 0; seq++ {
		var err error
		if buf, err = readFrame(r, buf); err != nil {
			return out, fmt.Errorf("%w: %s: record %d: %v", eventlog.ErrCorrupt, s.path, seq, err)
		}
		rec, err := decodeRecord(buf)
		if err == nil && rec.seq != seq {
			err = fmt.Errorf("record %d where %d belongs", rec.seq, seq)
		}
		if err != nil {
			return out, fmt.Errorf("%w: %s: record %d: %v", eventlog.ErrCorrupt, s.path, seq, err)
		}
		if seq < from {
			continue
		}
		out = append(out, eventlog.Record{
			Seq:  seq,
			ID:   string(rec.id),
			Time: time.Unix(0, rec.unixNano).UTC(),
			Body: bytes.Clone(rec.body),
		})
		n--
		*budget -= len(rec.body)
	}
	return out, nil
}
