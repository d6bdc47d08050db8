package ocistore

import (
	"crypto/md5"
	"encoding/base64"
	"errors"
	"io"
	"sync"
)

// errRevoked is what a part body's reader gets once the Store took the
// buffer back.
var errRevoked = errors.New("ocistore: request body revoked")

// partBody is a request body over a buffer that the Store reuses: it
// reads and seeks like a bytes.Reader until revoked, and never touches
// the buffer after revoke returns.
type partBody struct {
	mu   sync.Mutex
	data []byte // nil once revoked
	off  int64
}

func newPartBody(data []byte) *partBody {
	if data == nil {
		data = []byte{}
	}
	return &partBody{data: data}
}

func (b *partBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.data == nil {
		return 0, errRevoked
	}
	if b.off >= int64(len(b.data)) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += int64(n)
	return n, nil
}

// Seek lets the SDK rewind the body to retry a request.
func (b *partBody) Seek(offset int64, whence int) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.data == nil {
		return 0, errRevoked
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = b.off + offset
	case io.SeekEnd:
		abs = int64(len(b.data)) + offset
	default:
		return 0, errors.New("ocistore: seek: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("ocistore: seek: negative position")
	}
	b.off = abs
	return abs, nil
}

// Close does nothing: the SDK closes bodies when it likes; revoke is what
// ends the body.
func (b *partBody) Close() error { return nil }

// revoke ends the body: later reads fail, and none is in progress once it
// returns.
func (b *partBody) revoke() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data = nil
}

// contentMD5 is the Content-MD5 header of data.
func contentMD5(data []byte) string {
	sum := md5.Sum(data)
	return base64.StdEncoding.EncodeToString(sum[:])
}
