package logging_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/logclient"
	"github.com/zeroci/zeroci/modules/logging"
	"github.com/zeroci/zeroci/modules/rpc"
)

// TestWriteFollowClose: a runner writes stdout and stderr lines through a
// Writer while a follower follows from line 1; closing seals the log into
// the blob store and publishes log.closed; the follower ends with every
// line, in order.
func TestWriteFollowClose(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, logging.Options{})
			ctx := ctxT(t)
			job := jobRef("test")
			f := follow(ctx, e.client, job, 1, nil)
			w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			const n = 5000
			var want strings.Builder
			for i := int64(1); i <= n; i++ {
				stream := contracts.StreamStdout
				if i%3 == 0 {
					stream = contracts.StreamStderr
				}
				if err := w.Line(stream, lineText(i)); err != nil {
					t.Fatal(err)
				}
				want.WriteString(lineText(i) + "\n")
			}
			sum, err := w.Close(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Lines != n || sum.Bytes != int64(want.Len()) || sum.BlobKey != "logs/web/7/test.log" || sum.Truncated {
				t.Fatalf("summary %+v", sum)
			}
			got := f.wait(t, ctx)
			checkLines(t, got, 1, n, lineText)
			for _, l := range got {
				if wantStream := l.N%3 == 0; wantStream != (l.Stream == contracts.StreamStderr) || l.Time.IsZero() {
					t.Fatalf("line %d: stream %s, time %v", l.N, l.Stream, l.Time)
				}
			}
			if text := blobText(t, e, sum.BlobKey); text != want.String() {
				t.Fatalf("blob: %d bytes, want %d", len(text), want.Len())
			}
			ev, ok := closedEvents(t, e)["web#7/test"]
			if !ok || ev.Lines != n || ev.Bytes != sum.Bytes || ev.BlobKey != sum.BlobKey || ev.Truncated {
				t.Fatalf("log.closed: %+v (found %t)", ev, ok)
			}
			// Closing again answers the same summary, and publishes nothing new.
			again := must[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 1, Seq: 5})
			if again != sum {
				t.Fatalf("close again: %+v, want %+v", again, sum)
			}
			closedEvents(t, e)
			// A follower of a closed log gets it all and ends.
			checkLines(t, follow(ctx, e.client, job, 4001, nil).wait(t, ctx), 4001, 1000, lineText)
		})
	}
}

// TestIdempotentAppend: a chunk sent again is answered again and not
// stored twice.
func TestIdempotentAppend(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, logging.Options{Window: 4})
			job := jobRef("idem")
			cr := must[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 1})
			if cr != (contracts.Credit{Seq: 0, NextLine: 1, Window: 4}) {
				t.Fatalf("open: %+v", cr)
			}
			chunk1 := contracts.AppendLog{Job: job, Attempt: 1, Seq: 1, Lines: lines(1, 3, lineText)}
			chunk2 := contracts.AppendLog{Job: job, Attempt: 1, Seq: 2, Lines: lines(4, 2, lineText)}
			for i, step := range []struct {
				send contracts.AppendLog
				want contracts.Credit
			}{
				{chunk1, contracts.Credit{Seq: 1, NextLine: 4, Window: 4}},
				{chunk1, contracts.Credit{Seq: 1, NextLine: 4, Window: 4}},
				{chunk2, contracts.Credit{Seq: 2, NextLine: 6, Window: 4}},
				{chunk1, contracts.Credit{Seq: 2, NextLine: 6, Window: 4}}, // a late repeat: the latest credit
				{chunk2, contracts.Credit{Seq: 2, NextLine: 6, Window: 4}},
			} {
				if cr := must[contracts.Credit](t, e, step.send); cr != step.want {
					t.Fatalf("step %d, chunk %d: %+v, want %+v", i, step.send.Seq, cr, step.want)
				}
			}
			got, closed := readAll(t, e, job)
			checkLines(t, got, 1, 5, lineText)
			if closed {
				t.Fatal("closed before close")
			}
			// Opening the same attempt again (a restarted runner) says where to go on.
			if cr := must[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 1}); cr.Seq != 2 || cr.NextLine != 6 {
				t.Fatalf("open again: %+v", cr)
			}
			// A new attempt numbers its chunks from 1 again and goes on with the lines.
			if cr := must[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 2}); cr.Seq != 0 || cr.NextLine != 6 {
				t.Fatalf("open attempt 2: %+v", cr)
			}
			cr = must[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 2, Seq: 1, Lines: lines(6, 1, lineText)})
			if cr.Seq != 1 || cr.NextLine != 7 {
				t.Fatalf("append attempt 2: %+v", cr)
			}
			// The scheduler closes with what is stored (Seq unchecked); the
			// runner's own close afterwards answers the same summary.
			sum := must[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 2, Stored: true})
			if sum.Lines != 6 {
				t.Fatalf("summary %+v", sum)
			}
			if again := must[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 2, Seq: 1}); again != sum {
				t.Fatalf("the runner's close after the scheduler's: %+v, want %+v", again, sum)
			}
		})
	}
}

// TestConflicts: what the module refuses, and with which code.
func TestConflicts(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{})
	job := jobRef("conflicts")
	_, err := call[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 1, Seq: 1, Lines: lines(1, 1, lineText)})
	wantCode(t, "append before open", err, contracts.CodeNotFound)
	_, err = call[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 1})
	wantCode(t, "close before open", err, contracts.CodeNotFound)

	must[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 2})
	_, err = call[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 2, Seq: 1, Lines: lines(5, 1, lineText)})
	wantCode(t, "a gap in the line numbers", err, contracts.CodeConflict)
	_, err = call[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 2, Seq: 2000, Lines: lines(1, 1, lineText)})
	wantCode(t, "a chunk far ahead", err, contracts.CodeConflict)
	_, err = call[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 1})
	wantCode(t, "open an older attempt", err, contracts.CodeConflict)
	_, err = call[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 1, Seq: 1, Lines: lines(1, 1, lineText)})
	wantCode(t, "append to an older attempt", err, contracts.CodeConflict)
	_, err = call[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 3, Seq: 1, Lines: lines(1, 1, lineText)})
	wantCode(t, "append to an attempt not opened", err, contracts.CodeConflict)

	// A chunk whose predecessor does not come waits, then gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = rpc.Call[contracts.Credit](ctx, e.client, contracts.AppendLog{Job: job, Attempt: 2, Seq: 2, Lines: lines(2, 1, lineText)})
	cancel()
	wantCode(t, "a chunk whose predecessor never comes", err, contracts.CodeUnavailable)

	must[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 2, Seq: 1, Lines: lines(1, 1, lineText)})
	_, err = call[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 1, Seq: 1})
	wantCode(t, "close an older attempt", err, contracts.CodeConflict)
	_, err = call[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 2, Seq: 0})
	wantCode(t, "close before the last chunk stored", err, contracts.CodeConflict)
	must[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 2, Seq: 1})
	_, err = call[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 2, Seq: 2, Lines: lines(2, 1, lineText)})
	wantCode(t, "append after close", err, contracts.CodeConflict)
	_, err = call[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 3})
	wantCode(t, "open after close", err, contracts.CodeConflict)
	_, err = call[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 2, Seq: 1, Lines: []contracts.LogLine{{N: 1, Time: time.Now(), Stream: "stdout", Text: "a\nb"}}})
	wantCode(t, "a line with a newline", err, contracts.CodeInvalidArgument)
}

// TestOutOfOrder: chunks that arrive before their predecessors wait for
// them and are stored in order; a close waits for its last chunk.
func TestOutOfOrder(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{})
	job := jobRef("order")
	must[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 1})
	const chunks = 20
	var wg sync.WaitGroup
	errs := make(chan error, chunks+1)
	wg.Add(1)
	go func() { // the close comes first and waits for chunk 20
		defer wg.Done()
		_, err := call[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 1, Seq: chunks})
		errs <- err
	}()
	for i := chunks; i >= 1; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := call[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 1, Seq: int64(i), Lines: lines(int64(i-1)*10+1, 10, lineText)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, closed := readAll(t, e, job)
	checkLines(t, got, 1, chunks*10, lineText)
	if !closed {
		t.Fatal("not closed")
	}
}

// TestBackpressure: while the store takes nothing, a Writer sends at most
// its buffer of chunks and then blocks its caller; once the store goes
// on, every line arrives.
func TestBackpressure(t *testing.T) {
	var stalled atomic.Bool
	gate := make(chan struct{})
	var rounds atomic.Int64
	opts := logging.WithSyncHook(logging.Options{Window: 2}, func() {
		if stalled.Load() {
			rounds.Add(1)
			<-gate
		}
	})
	e := newEnv(t, "inproc", opts)
	ctx := ctxT(t)
	job := jobRef("slow")
	const buffer = 4
	w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{Buffer: buffer, FlushDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stalled.Store(true)
	var written atomic.Int64
	const n = 50 * contracts.MaxLogChunkLines
	done := make(chan error, 1)
	go func() {
		for i := int64(1); i <= n; i++ {
			if err := w.Line(contracts.StreamStdout, lineText(i)); err != nil {
				done <- err
				return
			}
			written.Store(i)
		}
		done <- nil
	}()
	// The writer fills its buffer and stops there.
	limit := int64(buffer * contracts.MaxLogChunkLines)
	waitFor(t, ctx, "the store to stall", func() bool { return rounds.Load() > 0 })
	waitFor(t, ctx, "the buffer to fill", func() bool { return written.Load() >= limit })
	for range 5 { // it stays there
		if got := written.Load(); got != limit {
			t.Fatalf("%d lines written while the store is stalled; the buffer holds %d", got, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, _ := readAll(t, e, job); len(got) != 0 {
		t.Fatalf("%d lines visible before they are durable", len(got))
	}
	stalled.Store(false)
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sum, err := w.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lines != n {
		t.Fatalf("summary %+v", sum)
	}
	got, _ := readAll(t, e, job)
	checkLines(t, got, 1, n, lineText)
}

// TestRestart: the module stops and starts again on the same directory:
// the lines are there, a torn tail is cut off, the runner goes on.
func TestRestart(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{})
	ctx := ctxT(t)
	job := jobRef("restart")
	w, err := logclient.NewWriter(ctx, e.client, job, 1, []contracts.Secret{"s3cret\nnext"}, logclient.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 2500; i++ {
		if err := w.Line(contracts.StreamStdout, lineText(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The last line may begin a secret that goes on after the restart.
	if err := w.Line(contracts.StreamStdout, "pw: s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	e.stopLogging()
	// A torn tail: a line without its commit record, and half a frame.
	path := logging.JobPath(e.dir, job)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	frame := logging.LineFrame(2502, "never acknowledged")
	f.Write(frame)
	f.Write(frame[:7])
	f.Close()
	e.startLogging(t)

	got, _ := readAll(t, e, job)
	checkLines(t, got[:2500], 1, 2500, lineText)
	if len(got) != 2501 || got[2500].Text != "pw: ***" {
		t.Fatalf("%d lines, last %q", len(got), got[len(got)-1].Text)
	}
	// The runner (restarted itself) opens the attempt again and goes on.
	w, err = logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Line(contracts.StreamStdout, "next line")
	w.Line(contracts.StreamStdout, "the end")
	sum, err := w.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = readAll(t, e, job)
	if sum.Lines != 2503 || len(got) != 2503 || got[2501].Text != "*** line" || got[2502].Text != "the end" {
		t.Fatalf("summary %+v, %d lines, last %q", sum, len(got), texts(got[2500:]))
	}
	// The secret is in the file only sealed.
	if data, err := os.ReadFile(path); err != nil || strings.Contains(string(data), "s3cret") {
		t.Fatalf("the job's file holds the secret in the clear (%v)", err)
	}
	// Restarted again, the closed log reads the same and closes the same.
	e.restart(t)
	again, _ := readAll(t, e, job)
	if len(again) != len(got) || again[2502] != got[2502] {
		t.Fatalf("after restart: %d lines", len(again))
	}
	if s := must[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 1}); s != sum {
		t.Fatalf("close after restart: %+v, want %+v", s, sum)
	}
}

// TestMaskSplitAcrossChunks writes a multi-line secret through a Writer,
// split into two chunks at every position (a Flush between the two
// parts), and a one-line secret split at every position across a line the
// runner cut: stored and followed lines never show any of it.
func TestMaskSplitAcrossChunks(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{})
	ctx := ctxT(t)
	secret := "line-one-SECRET\nline-two-SECRET\nlast-SECRET"
	text := "before " + secret + " after\nend\n"
	want := []string{"before ***", "***", "*** after", "end"}
	for k := len("before "); k < len(text)-len(" after\nend\n"); k++ {
		job := jobRef(fmt.Sprintf("mask-%d", k))
		f := follow(ctx, e.client, job, 1, nil)
		w, err := logclient.NewWriter(ctx, e.client, job, 1, []contracts.Secret{contracts.Secret(secret)}, logclient.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.Stdout().Write([]byte(text[:k]))
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		w.Stdout().Write([]byte(text[k:]))
		if _, err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		stored, _ := readAll(t, e, job)
		followed := f.wait(t, ctx)
		if got := texts(stored); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("split at %d: stored %q, want %q", k, got, want)
		}
		if got := texts(followed); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("split at %d: followed %q, want %q", k, got, want)
		}
	}

	token := "tok-3f9a8b7c6d"
	for k := 1; k < len(token); k++ {
		job := jobRef(fmt.Sprintf("cut-%d", k))
		must[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 1, Masks: []contracts.Secret{contracts.Secret(token)}})
		filler := strings.Repeat("x", contracts.MaxLogLineLen-k)
		must[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 1, Seq: 1, Lines: lines(1, 1, func(int64) string { return filler + token[:k] })})
		must[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 1, Seq: 2, Lines: lines(2, 1, func(int64) string { return token[k:] + " after" })})
		got, _ := readAll(t, e, job)
		if len(got) != 2 || got[0].Text != filler[:min(len(filler), contracts.MaxLogLineLen-3)]+"***" || got[1].Text != "*** after" {
			t.Fatalf("token split at %d: %q", k, texts(got)[1:])
		}
	}
}

// TestTruncation: past the size limit, one truncation line and nothing
// more; credits, the summary and log.closed say so.
func TestTruncation(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{MaxJobBytes: 1000})
	ctx := ctxT(t)
	job := jobRef("big")
	w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("y", 49) // 50 bytes with its newline: 20 fit
	for range 100 {
		if err := w.Line(contracts.StreamStdout, line); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !w.Truncated() {
		t.Fatal("the writer was not told the log is truncated")
	}
	sum, err := w.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	marker := "[zeroci] log truncated: the job's output passed 1000 bytes; later lines were dropped"
	got, closed := readAll(t, e, job)
	if len(got) != 21 || got[19].Text != line || got[20].Text != marker || got[20].Stream != contracts.StreamStderr || !closed {
		t.Fatalf("%d lines, last %q", len(got), got[len(got)-1].Text)
	}
	if sum.Lines != 21 || sum.Bytes != 1000+int64(len(marker))+1 || !sum.Truncated {
		t.Fatalf("summary %+v", sum)
	}
	if ev := closedEvents(t, e)["web#7/big"]; !ev.Truncated || ev.Lines != 21 {
		t.Fatalf("log.closed %+v", ev)
	}
	if !strings.HasSuffix(blobText(t, e, sum.BlobKey), marker+"\n") {
		t.Fatal("the blob does not end with the truncation line")
	}
}

// TestFollowHandOver: followers that start mid-stream, or disconnect and
// resume from their last line, get every line once, in order, while the
// log is written.
func TestFollowHandOver(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, logging.Options{})
			ctx := ctxT(t)
			job := jobRef("handover")
			w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			const n = 30000
			written := make(chan error, 1)
			var progress atomic.Int64
			go func() {
				for i := int64(1); i <= n; i++ {
					if err := w.Line(contracts.StreamStdout, lineText(i)); err != nil {
						written <- err
						return
					}
					progress.Store(i)
				}
				_, err := w.Close(ctx)
				written <- err
			}()
			// Start once part of the log is stored.
			waitFor(t, ctx, "lines", func() bool {
				res, err := logclient.Read(ctx, e.client, job, 5000, 1)
				return err == nil && len(res.Lines) == 1
			})
			mid := follow(ctx, e.client, job, 2000, nil)
			// A follower that disconnects twice and resumes from its last line.
			var got []contracts.LogLine
			next := int64(1)
			for stop := range []int64{7000, 15000} {
				at := []int64{7000, 15000}[stop]
				err := logclient.Follow(ctx, e.client, job, next, func(l contracts.LogLine) error {
					got = append(got, l)
					if l.N == at {
						return errStop
					}
					return nil
				})
				if !errors.Is(err, errStop) {
					t.Fatalf("follow to %d: %v", at, err)
				}
				next = got[len(got)-1].N + 1
			}
			err = logclient.Follow(ctx, e.client, job, next, func(l contracts.LogLine) error {
				got = append(got, l)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := <-written; err != nil {
				t.Fatal(err)
			}
			checkLines(t, got, 1, n, lineText)
			checkLines(t, mid.wait(t, ctx), 2000, n-1999, lineText)
		})
	}
}

// TestSlowFollower: a follower that stops taking lines slows neither the
// runner nor another follower; it catches up later.
func TestSlowFollower(t *testing.T) {
	e := newEnv(t, "tcp", logging.Options{})
	ctx := ctxT(t)
	job := jobRef("slowfollower")
	release := make(chan struct{})
	slow := follow(ctx, e.client, job, 1, func(l contracts.LogLine) {
		if l.N == 10 {
			<-release
		}
	})
	fast := follow(ctx, e.client, job, 1, nil)
	w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for i := int64(1); i <= n; i++ {
		if err := w.Line(contracts.StreamStdout, lineText(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkLines(t, fast.wait(t, ctx), 1, n, lineText)
	if c := slow.count(); c > 10 {
		t.Fatalf("the stalled follower has %d lines", c)
	}
	close(release)
	checkLines(t, slow.wait(t, ctx), 1, n, lineText)
}

// TestReads: line ranges, limits, index boundaries, a log that does not
// exist yet, and a read that waits for it.
func TestReads(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{})
	ctx := ctxT(t)
	job := jobRef("reads")
	res := must[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: 1})
	if len(res.Lines) != 0 || res.Closed || res.Next != 1 {
		t.Fatalf("read of a log not opened: %+v", res)
	}
	waiting := make(chan contracts.LogLines, 1)
	go func() {
		res, _ := call[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: 1, WaitMs: 20000})
		waiting <- res
	}()
	must[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 1})
	const n = 5000
	for s := range int64(5) {
		must[contracts.Credit](t, e, contracts.AppendLog{Job: job, Attempt: 1, Seq: s + 1, Lines: lines(s*1000+1, 1000, lineText)})
	}
	select {
	case res := <-waiting:
		if len(res.Lines) == 0 || res.Lines[0].N != 1 {
			t.Fatalf("waiting read: %d lines", len(res.Lines))
		}
	case <-ctx.Done():
		t.Fatal("the waiting read did not end")
	}
	for _, tc := range []struct {
		from  int64
		limit int
		want  int
	}{{1, 1, 1}, {1024, 3, 3}, {1025, 0, n - 1024}, {2048, 2, 2}, {4999, 10, 2}, {5000, 0, 1}} {
		res := must[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: tc.from, Limit: tc.limit})
		checkLines(t, res.Lines, tc.from, tc.want, lineText)
		if res.Next != tc.from+int64(tc.want) || res.Closed {
			t.Fatalf("read %d+%d: next %d, closed %t", tc.from, tc.limit, res.Next, res.Closed)
		}
	}
	// Past the end: nothing, and a short wait ends empty.
	start := time.Now()
	res = must[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: n + 1, WaitMs: 50})
	if len(res.Lines) != 0 || res.Next != n+1 || res.Closed || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("read past the end: %+v", res)
	}
	must[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 1, Seq: 5})
	res = must[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: n, WaitMs: 20000})
	if len(res.Lines) != 1 || !res.Closed || res.Next != n+1 {
		t.Fatalf("last line of a closed log: %+v", res)
	}
	res = must[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: n + 1, WaitMs: 20000})
	if len(res.Lines) != 0 || !res.Closed {
		t.Fatalf("read past the end of a closed log: %+v", res)
	}
}

// TestReadFromBlob: a closed log whose file is gone is read from its blob.
func TestReadFromBlob(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{})
	ctx := ctxT(t)
	job := jobRef("fromblob")
	w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 3000; i++ {
		w.Line(contracts.StreamStderr, lineText(i))
	}
	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e.stopLogging()
	if err := os.Remove(logging.JobPath(e.dir, job)); err != nil {
		t.Fatal(err)
	}
	e.startLogging(t)
	got, closed := readAll(t, e, job)
	checkLines(t, got, 1, 3000, lineText)
	if !closed {
		t.Fatal("not closed")
	}
	sum := must[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 1})
	if sum.Lines != 3000 || sum.BlobKey != "logs/web/7/fromblob.log" {
		t.Fatalf("summary %+v", sum)
	}
	// Removed again while the module runs.
	if err := os.Remove(logging.JobPath(e.dir, job)); err != nil {
		t.Fatal(err)
	}
	res := must[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: 2999})
	checkLines(t, res.Lines, 2999, 2, lineText)
}

// TestWriterLines: how a Writer turns output into lines: newlines split,
// unfinished lines wait, long lines are cut at rune boundaries into pieces
// of at least MaxLogLineLen-3 bytes, invalid UTF-8 becomes U+FFFD.
func TestWriterLines(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{})
	ctx := ctxT(t)
	job := jobRef("lines")
	w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Line(contracts.StreamStdout, "one\ntwo\n")
	w.Stdout().Write([]byte("thr"))
	w.Stderr().Write([]byte("err\n"))
	w.Stdout().Write([]byte("ee\nbad \xff\xfe byte\n"))
	long := strings.Repeat("é", 100000) // 2 bytes each: the cut falls inside one
	for i := 0; i < len(long); i += 7777 {
		w.Stdout().Write([]byte(long[i:min(i+7777, len(long))]))
	}
	w.Stdout().Write([]byte("\nunfinished"))
	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, e, job)
	want := []string{"one", "two", "err", "three", "bad \uFFFD byte"}
	if strings.Join(texts(got[:5]), "|") != strings.Join(want, "|") || got[2].Stream != contracts.StreamStderr {
		t.Fatalf("lines %q", texts(got[:5]))
	}
	var joined strings.Builder
	pieces := got[5 : len(got)-1]
	for i, l := range pieces {
		if i < len(pieces)-1 && (len(l.Text) < contracts.MaxLogLineLen-3 || len(l.Text) > contracts.MaxLogLineLen) {
			t.Fatalf("piece %d of the long line has %d bytes", i, len(l.Text))
		}
		joined.WriteString(l.Text)
	}
	if joined.String() != long || len(pieces) != 4 {
		t.Fatalf("the long line came back as %d pieces, %d bytes", len(pieces), joined.Len())
	}
	if last := got[len(got)-1].Text; last != "unfinished" {
		t.Fatalf("last line %q", last)
	}
}

// TestResendOnTimeout: chunks whose answers do not come in time are sent
// again with the same sequence numbers and stored once.
func TestResendOnTimeout(t *testing.T) {
	var stalled atomic.Bool
	gate := make(chan struct{})
	opts := logging.WithSyncHook(logging.Options{}, func() {
		if stalled.Load() {
			<-gate
		}
	})
	e := newEnv(t, "inproc", opts)
	ctx := ctxT(t)
	job := jobRef("resend")
	w, err := logclient.NewWriter(ctx, e.client, job, 1, nil, logclient.WriterOptions{RequestTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stalled.Store(true)
	before := e.client.Stats().Requests
	const n = 3000
	for i := int64(1); i <= n; i++ {
		w.Line(contracts.StreamStdout, lineText(i))
	}
	// n lines make full chunks, all sent at once; wait for resends.
	waitFor(t, ctx, "resends", func() bool { return e.client.Stats().Requests-before > 3*n/contracts.MaxLogChunkLines })
	stalled.Store(false)
	close(gate)
	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, e, job)
	checkLines(t, got, 1, n, lineText)
}

// TestEmptyLog: a log without lines closes into an empty blob.
func TestEmptyLog(t *testing.T) {
	e := newEnv(t, "inproc", logging.Options{})
	job := jobRef("empty")
	must[contracts.Credit](t, e, contracts.OpenLog{Job: job, Attempt: 1})
	sum := must[contracts.LogSummary](t, e, contracts.CloseLog{Job: job, Attempt: 1, Seq: 0})
	if sum != (contracts.LogSummary{BlobKey: "logs/web/7/empty.log"}) {
		t.Fatalf("summary %+v", sum)
	}
	if text := blobText(t, e, sum.BlobKey); text != "" {
		t.Fatalf("blob %q", text)
	}
	res := must[contracts.LogLines](t, e, contracts.ReadLog{Job: job, From: 1, WaitMs: 10000})
	if len(res.Lines) != 0 || !res.Closed {
		t.Fatalf("read: %+v", res)
	}
}

// TestWriterCancel: a Writer whose context ends while the store is stuck
// fails its calls and leaves no goroutine behind.
func TestWriterCancel(t *testing.T) {
	var stalled atomic.Bool
	gate := make(chan struct{})
	opts := logging.WithSyncHook(logging.Options{}, func() {
		if stalled.Load() {
			<-gate
		}
	})
	e := newEnv(t, "inproc", opts)
	t.Cleanup(func() { close(gate) }) // before the module stops
	ctx := ctxT(t)
	wctx, cancel := context.WithCancel(ctx)
	w, err := logclient.NewWriter(wctx, e.client, jobRef("cancel"), 1, nil, logclient.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stalled.Store(true)
	for i := int64(1); i <= 10; i++ {
		if err := w.Line(contracts.StreamStdout, lineText(i)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := w.Line(contracts.StreamStdout, "late"); !errors.Is(err, context.Canceled) {
		t.Fatalf("line after cancel: %v", err)
	}
	if err := w.Finish(ctx); err == nil {
		t.Fatal("finish after cancel succeeded")
	}
	if err := w.Finish(ctx); !errors.Is(err, logclient.ErrClosed) {
		t.Fatalf("second finish: %v", err)
	}
}
