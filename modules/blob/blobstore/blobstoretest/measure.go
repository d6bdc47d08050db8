package blobstoretest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"runtime"
	"time"
)

// PeakHeap runs f and returns by how much runtime.MemStats.HeapInuse rose
// above its level before f (after a GC) at the highest of samples taken
// every few milliseconds while f ran.
func PeakHeap(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		p := base
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			p = max(p, ms.HeapInuse)
			select {
			case <-stop:
				peak <- p
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	return <-peak - base
}

// PatternReader yields n reproducible bytes without holding them: a
// 64 KiB pseudo-random block, each repetition stamped with its number.
// It has only Read, so a backend sees a stream.
type PatternReader struct {
	block []byte
	n     int64
	off   int64
}

// NewPatternReader returns a reader of n bytes; the same seed and n give
// the same bytes.
func NewPatternReader(seed uint64, n int64) *PatternReader {
	return &PatternReader{block: randomBytes(seed, 64<<10), n: n}
}

// Read implements io.Reader.
func (p *PatternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	total := 0
	for len(b) > 0 && p.off < p.n {
		i := p.off % int64(len(p.block))
		chunk := p.block[i:]
		chunk = chunk[:min(int64(len(chunk)), p.n-p.off)]
		n := copy(b, chunk)
		if i < 8 { // stamp the repetition number over the block's first bytes
			var stamp [8]byte
			binary.LittleEndian.PutUint64(stamp[:], uint64(p.off/int64(len(p.block))))
			for j := i; j < 8 && j-i < int64(n); j++ {
				b[j-i] ^= stamp[j]
			}
		}
		b = b[n:]
		p.off += int64(n)
		total += n
	}
	return total, nil
}

// PatternSHA256 is the SHA-256 of NewPatternReader(seed, n)'s bytes.
func PatternSHA256(seed uint64, n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, NewPatternReader(seed, n))
	return hex.EncodeToString(h.Sum(nil))
}
