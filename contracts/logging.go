package contracts

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Logging messages (service ServiceLogging).
//
// Call order for a runner: logging.open for each attempt of a job (it
// registers the values to mask and returns where to go on), then
// logging.append with chunks numbered 1, 2, 3... for that attempt, keeping
// at most Credit.Window chunks unanswered, and logging.close after the
// job's last attempt. Lines are numbered from 1 per job, across attempts,
// without gaps: a chunk must start at the Credit.NextLine the runner was
// given, else CodeConflict. An append is idempotent by (job, attempt,
// seq): a chunk that was stored is answered again without being stored
// twice. Chunks of an older attempt are refused (CodeConflict).
//
// Readers call logging.read from line 1 (or the line after the last one
// they hold); with WaitMs set the call waits for new lines, which is how a
// reader follows a live log: read again from LogLines.Next until Closed is
// set and no lines come back.
//
// The logging module masks the registered secret values in the lines it
// stores, so readers never see them.
const (
	TypeOpenLog    = "logging.open"
	TypeAppendLog  = "logging.append"
	TypeReadLog    = "logging.read"
	TypeCloseLog   = "logging.close"
	TypeCredit     = "logging.credit"
	TypeLogLines   = "logging.lines"
	TypeLogSummary = "logging.summary"
)

const (
	// MaxLogLineLen bounds a line's text; runners split longer lines.
	MaxLogLineLen = 64 << 10
	// MaxLogChunkLines bounds the lines of one append.
	MaxLogChunkLines = 1000
	// MaxLogReadLines bounds ReadLog.Limit. A reply also stops early to
	// stay within MaxPayload.
	MaxLogReadLines = 10000
	// MaxMasks bounds the values registered for masking per job.
	MaxMasks   = maxNamesList
	maxWindow  = 1024
	maxLogSize = 1 << 40
)

// LogLine is one line of a job's output.
type LogLine struct {
	N      int64     `json:"n"` // line number in the job's log, from 1
	Time   time.Time `json:"time"`
	Stream Stream    `json:"stream"`
	// Text is the line without its newline, as printed (ANSI escapes and
	// carriage returns included). Runners replace invalid UTF-8 with
	// U+FFFD, since JSON carries text.
	Text string `json:"text"`
}

func (l LogLine) check() error {
	var text error
	switch {
	case len(l.Text) > MaxLogLineLen:
		text = problem("%d bytes, max %d", len(l.Text), MaxLogLineLen)
	case !utf8.ValidString(l.Text):
		text = problem("not valid UTF-8")
	case strings.IndexByte(l.Text, '\n') >= 0:
		text = problem("contains a newline")
	}
	return all(
		field("n", checkLineNumber(l.N)),
		field("time", checkTime(l.Time)),
		field("stream", l.Stream.check()),
		field("text", text),
	)
}

func checkLineNumber(n int64) error { return between(n, 1, maxLogSize) }

// checkLines checks lines and that they are numbered consecutively.
func checkLines(lines []LogLine, max int) error {
	var prev int64
	return each(lines, max, func(l LogLine) error {
		if err := l.check(); err != nil {
			return err
		}
		if prev != 0 && l.N != prev+1 {
			return field("n", problem("%d after %d: not consecutive", l.N, prev))
		}
		prev = l.N
		return nil
	})
}

// OpenLog starts an attempt's log and registers the secret values to mask
// in it (logging.open → logging.credit, with Seq 0 for a new attempt).
type OpenLog struct {
	Job     JobRef   `json:"job"`
	Attempt int      `json:"attempt"`
	Masks   []Secret `json:"masks,omitempty"` // values to replace with "***"
}

func (OpenLog) MessageType() string { return TypeOpenLog }

func (m OpenLog) Validate() error {
	return validate(TypeOpenLog,
		field("job", m.Job.check()),
		field("attempt", checkAttempt(m.Attempt)),
		field("masks", each(m.Masks, MaxMasks, checkSecret)),
	)
}

// AppendLog adds a chunk of lines (logging.append → logging.credit).
type AppendLog struct {
	Job     JobRef    `json:"job"`
	Attempt int       `json:"attempt"`
	Seq     int64     `json:"seq"`   // the chunk's number in the attempt, from 1
	Lines   []LogLine `json:"lines"` // consecutive line numbers
}

func (AppendLog) MessageType() string { return TypeAppendLog }

func (m AppendLog) Validate() error {
	lines := checkLines(m.Lines, MaxLogChunkLines)
	if lines == nil && len(m.Lines) == 0 {
		lines = problem("required")
	}
	return validate(TypeAppendLog,
		field("job", m.Job.check()),
		field("attempt", checkAttempt(m.Attempt)),
		field("seq", between(m.Seq, 1, maxLogSize)),
		field("lines", lines),
	)
}

// Credit answers OpenLog and AppendLog (logging.credit).
type Credit struct {
	Seq      int64 `json:"seq"`       // the highest chunk of the attempt stored; 0 for none
	NextLine int64 `json:"next_line"` // the number the next chunk's first line must have
	// Window is how many chunks after Seq the runner may send before it
	// waits for a reply; 0 means wait (the log is busy).
	Window int `json:"window"`
	// Truncated: the log reached its size limit; further lines are
	// dropped, so the runner may stop sending them.
	Truncated bool `json:"truncated,omitempty"`
}

func (Credit) MessageType() string { return TypeCredit }

func (m Credit) Validate() error {
	return validate(TypeCredit,
		field("seq", between(m.Seq, 0, maxLogSize)),
		field("next_line", checkLineNumber(m.NextLine)),
		field("window", between(m.Window, 0, maxWindow)),
	)
}

// ReadLog reads lines from line From on (logging.read → logging.lines).
type ReadLog struct {
	Job   JobRef `json:"job"`
	From  int64  `json:"from"`            // the first line wanted, from 1
	Limit int    `json:"limit,omitempty"` // 0 means as many as fit, up to MaxLogReadLines
	// WaitMs, if set and there is no line From yet and the log is not
	// closed, waits up to that long for one: the way to follow a log.
	WaitMs int64 `json:"wait_ms,omitempty"`
}

func (ReadLog) MessageType() string { return TypeReadLog }

func (m ReadLog) Validate() error {
	return validate(TypeReadLog,
		field("job", m.Job.check()),
		field("from", checkLineNumber(m.From)),
		field("limit", between(m.Limit, 0, MaxLogReadLines)),
		field("wait_ms", checkWait(m.WaitMs)),
	)
}

// LogLines answers ReadLog (logging.lines).
type LogLines struct {
	Job    JobRef    `json:"job"`
	Lines  []LogLine `json:"lines"`            // consecutive, from the requested line
	Next   int64     `json:"next"`             // the From of the next read
	Closed bool      `json:"closed,omitempty"` // the log is complete: there is nothing after Next
}

func (LogLines) MessageType() string { return TypeLogLines }

func (m LogLines) Validate() error {
	next := checkLineNumber(m.Next)
	if n := len(m.Lines); next == nil && n > 0 && m.Next != m.Lines[n-1].N+1 {
		next = problem("%d, want the last line's number + 1 (%d)", m.Next, m.Lines[n-1].N+1)
	}
	return validate(TypeLogLines,
		field("job", m.Job.check()),
		field("lines", checkLines(m.Lines, MaxLogReadLines)),
		field("next", next),
	)
}

// CloseLog completes a job's log after its last attempt (logging.close →
// logging.summary). The logging module stores the log as a blob and
// publishes log.closed. Closing a closed log answers the same summary.
type CloseLog struct {
	Job     JobRef `json:"job"`
	Attempt int    `json:"attempt"`
	Seq     int64  `json:"seq"` // the attempt's last chunk, so that logging knows it has them all
	// Stored closes with the chunks stored so far, Seq unchecked: the
	// scheduler closes the log of a job whose runner reported its end (the
	// runner finishes its output before it reports), in case the runner
	// dies before its own close.
	Stored bool `json:"stored,omitempty"`
}

func (CloseLog) MessageType() string { return TypeCloseLog }

func (m CloseLog) Validate() error {
	return validate(TypeCloseLog,
		field("job", m.Job.check()),
		field("attempt", checkAttempt(m.Attempt)),
		field("seq", between(m.Seq, 0, maxLogSize)),
	)
}

// LogSummary answers CloseLog (logging.summary).
type LogSummary struct {
	Lines     int64  `json:"lines"`
	Bytes     int64  `json:"bytes"`
	BlobKey   string `json:"blob_key"`
	Truncated bool   `json:"truncated,omitempty"`
}

func (LogSummary) MessageType() string { return TypeLogSummary }

func (m LogSummary) Validate() error {
	return validate(TypeLogSummary,
		field("lines", nonNegative(m.Lines)),
		field("bytes", nonNegative(m.Bytes)),
		field("blob_key", checkBlobKey(m.BlobKey)),
	)
}

// JSONStringLen bounds the length of s encoded as the contents of a JSON
// string, as this package encodes it: for sizing chunks of lines to stay
// within MaxPayload.
func JSONStringLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '<', c == '>', c == '&':
			n += 5
		case c == '"', c == '\\':
			n++
		case c == 0xe2: // U+2028 and U+2029 are escaped too
			n += 3
		}
	}
	return n
}
