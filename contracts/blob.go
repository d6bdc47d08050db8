package contracts

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Blob store messages (service ServiceBlob). Blobs are written in chunks:
// put_begin opens an upload, put_chunk sends data at an offset, put_commit
// checks the whole size and SHA-256 and makes the blob visible under its
// key (replacing an older blob), put_abort drops an upload. A put_chunk is
// idempotent by offset: resending a chunk that was stored is a no-op, and
// Received.Size tells a client where to go on; an offset past Size is
// CodeConflict. Reads go chunk by chunk with get; BlobChunk.BlobSHA256
// lets a reader notice that the blob was replaced between two chunks.
// Errors: CodeNotFound for an unknown key or upload.
const (
	TypePutBegin    = "blob.put_begin"
	TypePutChunk    = "blob.put_chunk"
	TypePutCommit   = "blob.put_commit"
	TypePutAbort    = "blob.put_abort"
	TypeGetBlob     = "blob.get"
	TypeStatBlob    = "blob.stat"
	TypeListBlobs   = "blob.list"
	TypeDeleteBlob  = "blob.delete"
	TypeUpload      = "blob.upload"
	TypeReceived    = "blob.received"
	TypeBlobChunk   = "blob.chunk"
	TypeBlobInfo    = "blob.info"
	TypeBlobListing = "blob.listing"
)

const (
	// MaxBlobChunk bounds the data of one chunk. JSON carries it in base64,
	// 4/3 larger, which still fits in MaxPayload.
	MaxBlobChunk = 4 << 20
	// MaxBlobKeyLen bounds a blob key.
	MaxBlobKeyLen = 1024
	// MaxBlobSize bounds a blob (1 TiB).
	MaxBlobSize    = 1 << 40
	maxContentType = 255
	maxPageToken   = 1024
)

// PutBegin opens an upload (blob.put_begin → blob.upload).
type PutBegin struct {
	Key         string `json:"key"`
	ContentType string `json:"content_type,omitempty"` // e.g. "application/gzip"
}

func (PutBegin) MessageType() string { return TypePutBegin }

func (m PutBegin) Validate() error {
	return validate(TypePutBegin,
		field("key", checkBlobKey(m.Key)),
		field("content_type", checkText(m.ContentType, maxContentType, false)),
	)
}

// Upload answers PutBegin (blob.upload).
type Upload struct {
	UploadID  ID  `json:"upload_id"`
	ChunkSize int `json:"chunk_size"` // the chunk size the store prefers, at most MaxBlobChunk
}

func (Upload) MessageType() string { return TypeUpload }

func (m Upload) Validate() error {
	return validate(TypeUpload,
		field("upload_id", checkID(m.UploadID)),
		field("chunk_size", between(m.ChunkSize, 1, MaxBlobChunk)),
	)
}

// PutChunk sends data at Offset of an upload (blob.put_chunk →
// blob.received). Validate checks SHA256 against Data.
type PutChunk struct {
	UploadID ID     `json:"upload_id"`
	Offset   int64  `json:"offset"`
	Data     []byte `json:"data"`   // base64 in JSON; 1..MaxBlobChunk bytes
	SHA256   string `json:"sha256"` // of Data
}

func (PutChunk) MessageType() string { return TypePutChunk }

func (m PutChunk) Validate() error {
	return validate(TypePutChunk,
		field("upload_id", checkID(m.UploadID)),
		field("offset", between(m.Offset, 0, MaxBlobSize-int64(len(m.Data)))),
		field("data", checkChunkData(m.Data, false)),
		field("sha256", checkDigest(m.SHA256, m.Data)),
	)
}

// Received answers PutChunk (blob.received).
type Received struct {
	UploadID ID    `json:"upload_id"`
	Size     int64 `json:"size"` // bytes stored without gaps from offset 0: the next chunk's offset
}

func (Received) MessageType() string { return TypeReceived }

func (m Received) Validate() error {
	return validate(TypeReceived,
		field("upload_id", checkID(m.UploadID)),
		field("size", between(m.Size, 0, MaxBlobSize)),
	)
}

// PutCommit completes an upload (blob.put_commit → blob.info). The store
// refuses (CodeConflict) if it holds a different size or digest.
type PutCommit struct {
	UploadID ID     `json:"upload_id"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"` // of the whole blob
}

func (PutCommit) MessageType() string { return TypePutCommit }

func (m PutCommit) Validate() error {
	return validate(TypePutCommit,
		field("upload_id", checkID(m.UploadID)),
		field("size", between(m.Size, 0, MaxBlobSize)),
		field("sha256", checkSHA256(m.SHA256)),
	)
}

// PutAbort drops an upload (blob.put_abort → reply.ok).
type PutAbort struct {
	UploadID ID `json:"upload_id"`
}

func (PutAbort) MessageType() string { return TypePutAbort }

func (m PutAbort) Validate() error {
	return validate(TypePutAbort, field("upload_id", checkID(m.UploadID)))
}

// GetBlob reads up to Length bytes of a blob from Offset (blob.get →
// blob.chunk).
type GetBlob struct {
	Key    string `json:"key"`
	Offset int64  `json:"offset,omitempty"`
	Length int    `json:"length,omitempty"` // 0 means MaxBlobChunk
}

func (GetBlob) MessageType() string { return TypeGetBlob }

func (m GetBlob) Validate() error {
	return validate(TypeGetBlob,
		field("key", checkBlobKey(m.Key)),
		field("offset", between(m.Offset, 0, MaxBlobSize)),
		field("length", between(m.Length, 0, MaxBlobChunk)),
	)
}

// BlobChunk answers GetBlob (blob.chunk). Validate checks SHA256 against
// Data.
type BlobChunk struct {
	Key        string `json:"key"`
	Offset     int64  `json:"offset"`
	Data       []byte `json:"data"`        // base64 in JSON; empty at or past the end
	SHA256     string `json:"sha256"`      // of Data
	Size       int64  `json:"size"`        // the whole blob's size
	BlobSHA256 string `json:"blob_sha256"` // the whole blob's digest
	EOF        bool   `json:"eof"`         // Data reaches the end of the blob
}

func (BlobChunk) MessageType() string { return TypeBlobChunk }

func (m BlobChunk) Validate() error {
	end := m.Offset + int64(len(m.Data))
	var eof error
	switch {
	case end > m.Size && len(m.Data) > 0:
		eof = problem("offset %d + %d bytes is past the size %d", m.Offset, len(m.Data), m.Size)
	case m.EOF != (end >= m.Size):
		eof = problem("%t, but offset %d + %d bytes of %d", m.EOF, m.Offset, len(m.Data), m.Size)
	}
	return validate(TypeBlobChunk,
		field("key", checkBlobKey(m.Key)),
		field("offset", between(m.Offset, 0, MaxBlobSize)),
		field("data", checkChunkData(m.Data, true)),
		field("sha256", checkDigest(m.SHA256, m.Data)),
		field("size", between(m.Size, 0, MaxBlobSize)),
		field("blob_sha256", checkSHA256(m.BlobSHA256)),
		field("eof", eof),
	)
}

// StatBlob reads a blob's metadata (blob.stat → blob.info).
type StatBlob struct {
	Key string `json:"key"`
}

func (StatBlob) MessageType() string { return TypeStatBlob }

func (m StatBlob) Validate() error {
	return validate(TypeStatBlob, field("key", checkBlobKey(m.Key)))
}

// BlobInfo is a blob's metadata (blob.info).
type BlobInfo struct {
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type,omitempty"`
	ModTime     time.Time `json:"mod_time"`
}

func (BlobInfo) MessageType() string { return TypeBlobInfo }

func (m BlobInfo) Validate() error { return validate(TypeBlobInfo, m.check()) }

func (m BlobInfo) check() error {
	return all(
		field("key", checkBlobKey(m.Key)),
		field("size", between(m.Size, 0, MaxBlobSize)),
		field("sha256", checkSHA256(m.SHA256)),
		field("content_type", checkText(m.ContentType, maxContentType, false)),
		field("mod_time", checkTime(m.ModTime)),
	)
}

// ListBlobs lists blobs whose keys start with Prefix, in key order
// (blob.list → blob.listing).
type ListBlobs struct {
	Prefix    string `json:"prefix,omitempty"`
	PageToken string `json:"page_token,omitempty"` // BlobListing.NextPageToken of the previous page
	Limit     int    `json:"limit,omitempty"`      // 0 means DefaultListLimit
}

func (ListBlobs) MessageType() string { return TypeListBlobs }

func (m ListBlobs) Validate() error {
	return validate(TypeListBlobs,
		field("prefix", checkBlobPrefix(m.Prefix)),
		field("page_token", checkText(m.PageToken, maxPageToken, false)),
		field("limit", checkLimit(m.Limit)),
	)
}

// BlobListing answers ListBlobs (blob.listing).
type BlobListing struct {
	Blobs         []BlobInfo `json:"blobs"`                     // ascending keys
	NextPageToken string     `json:"next_page_token,omitempty"` // empty on the last page
}

func (BlobListing) MessageType() string { return TypeBlobListing }

func (m BlobListing) Validate() error {
	prev := ""
	blobs := each(m.Blobs, MaxListLimit, func(b BlobInfo) error {
		if err := b.check(); err != nil {
			return err
		}
		if b.Key <= prev {
			return field("key", problem("%s after %s: not ascending", quote(b.Key), quote(prev)))
		}
		prev = b.Key
		return nil
	})
	return validate(TypeBlobListing,
		field("blobs", blobs),
		field("next_page_token", checkText(m.NextPageToken, maxPageToken, false)),
	)
}

// DeleteBlob removes a blob (blob.delete → reply.ok). Deleting a missing
// key is not an error.
type DeleteBlob struct {
	Key string `json:"key"`
}

func (DeleteBlob) MessageType() string { return TypeDeleteBlob }

func (m DeleteBlob) Validate() error {
	return validate(TypeDeleteBlob, field("key", checkBlobKey(m.Key)))
}

// BlobSHA256 returns the lowercase hex SHA-256 of data, as the sha256
// fields hold it.
func BlobSHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func checkChunkData(data []byte, allowEmpty bool) error {
	switch {
	case len(data) == 0 && !allowEmpty:
		return problem("required")
	case len(data) > MaxBlobChunk:
		return problem("%d bytes, max %d", len(data), MaxBlobChunk)
	}
	return nil
}

// checkDigest checks that digest is data's SHA-256.
func checkDigest(digest string, data []byte) error {
	if err := checkSHA256(digest); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	var want [64]byte
	hex.Encode(want[:], sum[:])
	if string(want[:]) != digest {
		return problem("does not match the data")
	}
	return nil
}
