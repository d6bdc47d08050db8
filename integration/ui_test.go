package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/zeroci/zeroci/internal/gittest"
)

// chromiumBin is Debian's chromium, which CI installs (.ci/run).
const chromiumBin = "/usr/bin/chromium"

// uiPipeline prints green lines slowly, so the page can show them while
// they come, then waits for an approval.
const uiPipeline = `jobs:
  build:
    script:
      - |
        for i in 1 2 3 4 5 6 7 8; do printf '\033[32mline %s\033[0m\n' "$i"; sleep 0.3; done
  deploy:
    depends_on: [build]
    manual: true
    script: [echo deployed]
`

// uiLines is how many lines the build job prints.
const uiLines = 8

// browser starts headless Chromium for the test; it fails the test under
// CI=true when Chromium is missing, and skips it otherwise. Messages and
// exceptions of the page are logged, and returned by the func.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	if _, err := os.Stat(chromiumBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s is missing (%v): install Debian's chromium (apt-get install -y chromium)", chromiumBin, err)
		}
		t.Skipf("%s is absent: install Debian's chromium (apt-get install -y chromium) to run the browser test", chromiumBin)
	}
	profile := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumBin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 1000),
	)
	var mu sync.Mutex
	var messages []string
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf), chromedp.WithListener(func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
		default:
			return
		}
		mu.Lock()
		messages = append(messages, msg)
		mu.Unlock()
	}))
	// Cleanups run last-in first-out: the browser stops before its
	// profile directory is removed.
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", chromiumBin, err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), messages...)
	}
}

// step runs actions with a deadline, failing the test with what.
func step(t *testing.T, ctx context.Context, what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// logView is what the page shows of a job's log.
type logView struct {
	Lines  []string `json:"lines"`
	Green  int      `json:"green"` // lines with text in ANSI green (SGR 32)
	Ended  bool     `json:"ended"`
	Status string   `json:"status"`
}

// readLogView reads the log section of job from the page.
func readLogView(ctx context.Context, job string) (logView, error) {
	js := fmt.Sprintf(`(() => {
		const s = document.querySelector('details.log-section[data-job=%q]');
		if (!s) return {lines: [], green: 0, ended: false, status: ''};
		const lines = [...s.querySelectorAll('pre.log .line')];
		return {
			lines: lines.map((l) => l.textContent),
			green: lines.filter((l) => l.querySelector('span.fg-2')).length,
			ended: s.dataset.ended === 'true',
			status: s.dataset.status || '',
		};
	})()`, job)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[logView](js))
}

// uiAPI sends an API request as token and decodes the answer into out.
func uiAPI(t *testing.T, base, token, method, path string, body any, want int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

// TestUIChromium drives the web UI in headless Chromium against the real
// binary: log in with the admin token, trigger a build from the page,
// watch its log lines arrive live (in colour), approve the manual job,
// see the build succeed, and keep a screenshot.
func TestUIChromium(t *testing.T) {
	ctx, pageMessages := browser(t)
	defer func() {
		if t.Failed() {
			for _, m := range pageMessages() {
				t.Logf("page: %s", m)
			}
		}
	}()

	dir := t.TempDir()
	src := gittest.PipelineRepo(t, uiPipeline)
	_, base, token := singleServer(t, dir)
	uiAPI(t, base, token, "POST", "/api/v1/repos", map[string]any{"name": "webapp", "url": src}, 201, nil)

	// Log in: a wrong token is refused on the page, the admin token works.
	step(t, ctx, "open the login page", 30*time.Second,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "zci_wrong"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("form.login p.error:not(:empty)")),
	)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#token').value = ''`)); err != nil {
		t.Fatalf("clearing the token field: %v", err)
	}
	step(t, ctx, "log in and see the repository", 30*time.Second,
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-repo="webapp"] a`)),
		chromedp.Click(chromedp.CSS(`tr[data-repo="webapp"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#trigger")),
	)
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.getItem('zeroci.token')`))
	if err != nil || stored != token {
		t.Fatalf("the token in localStorage: %q %v", stored, err)
	}

	// Trigger from the page: it opens the build page.
	step(t, ctx, "trigger a build", 30*time.Second,
		chromedp.Click(chromedp.CSS("#trigger")),
		chromedp.WaitVisible(chromedp.CSS(`#graph .job[data-job="build"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#graph .job[data-job="deploy"]`)),
	)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasSuffix(loc, "#/repos/webapp/builds/1") {
		t.Fatalf("after trigger the page is %q (%v), want build 1", loc, err)
	}

	// The log arrives line by line while the job runs.
	partial, last := false, logView{}
	deadline := time.Now().Add(90 * time.Second)
	for {
		v, err := readLogView(ctx, "build")
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		last = v
		if n := len(v.Lines); n > 0 && n < uiLines && !v.Ended {
			partial = true
		}
		if len(v.Lines) >= uiLines && v.Ended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the build job's log never showed %d lines and its end: %+v", uiLines, v)
		}
		time.Sleep(40 * time.Millisecond) // the page updates on its own; this is how often we look
	}
	if !partial {
		t.Errorf("never saw the log part way: the lines did not arrive live")
	}
	for i, l := range last.Lines {
		if want := fmt.Sprintf("line %d", i+1); l != want {
			t.Errorf("log line %d on the page: %q, want %q (no escape codes, nothing lost or repeated)", i+1, l, want)
		}
	}
	if len(last.Lines) != uiLines || last.Green != uiLines {
		t.Errorf("log: %d lines, %d of them green; want %d and %d", len(last.Lines), last.Green, uiLines, uiLines)
	}

	// The manual job waits, with its reason and an approve button.
	step(t, ctx, "the manual job is blocked", 60*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`.job[data-job="deploy"][data-status="blocked"] button.approve`)))
	var b struct {
		Jobs []struct {
			ID, Status, Reason string
		} `json:"jobs"`
	}
	uiAPI(t, base, token, "GET", "/api/v1/repos/webapp/builds/1", nil, 200, &b)
	for _, j := range b.Jobs {
		if j.ID == "deploy" && j.Reason != "" {
			shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`.job[data-job="deploy"] .reason`)))
			if err != nil || !strings.Contains(shown, j.Reason) {
				t.Errorf("the page shows reason %q (%v), the API says %q", shown, err, j.Reason)
			}
		}
	}

	// Approve: the job runs and the build succeeds, live on the page.
	step(t, ctx, "approve the manual job", 90*time.Second,
		chromedp.Click(chromedp.CSS(`.job[data-job="deploy"] button.approve`)),
		chromedp.WaitVisible(chromedp.CSS(`.job[data-job="deploy"][data-status="success"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.build-head .badge.st-success`)),
		chromedp.WaitVisible(chromedp.CSS(`#retry`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#cancel`)),
	)
	for deadline := time.Now().Add(30 * time.Second); ; {
		v, err := readLogView(ctx, "deploy")
		if err == nil && len(v.Lines) == 1 && v.Lines[0] == "deployed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deploy job's log on the page: %+v %v", v, err)
		}
		time.Sleep(40 * time.Millisecond)
	}

	// The builds list shows the build as succeeded.
	step(t, ctx, "the builds list", 30*time.Second,
		chromedp.Click(chromedp.CSS(`h1 a[href="#/repos/webapp"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-build="1"] .badge.st-success`)),
		chromedp.Click(chromedp.CSS(`tr[data-build="1"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`.job[data-job="deploy"][data-status="success"]`)),
	)
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
	if err != nil || strings.Contains(text, "undefined") || strings.Contains(text, "null") || strings.Contains(text, "NaN") {
		t.Errorf("the build page shows a missing value (%v):\n%s", err, text)
	}
	checkRenderers(t, ctx)
	for _, m := range pageMessages() {
		if strings.HasPrefix(m, "exception:") {
			t.Errorf("the page threw: %s", m)
		}
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(shot, []byte("\x89PNG")) {
		t.Fatalf("the screenshot is not a PNG")
	}
	out := os.Getenv("ZEROCI_TEST_OUTPUT")
	if out == "" {
		out = t.TempDir()
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, "ui-build.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// rendererCheck runs the page's ANSI renderer and SSE parser on tricky
// input, in the browser, and returns what they made.
const rendererCheck = `(async () => {
	const { newState, renderLine } = await import('/assets/ansi.js');
	const { SSEParser } = await import('/assets/sse.js');
	const state = newState();
	const a = document.createElement('div');
	renderLine(a, '\x1b[1;31mred\x1b[0m <b>plain</b> \x1b[38;5;208mx\x1b[K\x1b]0;title\x07y', state);
	const b = document.createElement('div');
	renderLine(b, 'still\x1b[0m', state);
	const events = [];
	const p = new SSEParser((e) => events.push(e));
	for (const chunk of ['id: 1\ndata: <i>a</i>\n', '\n: keep-alive\n\nid: 2\nda', 'ta:  two\r\n\r\nid: 3\ndata:\n\nevent: end\ndata:\n\n']) p.push(chunk);
	return {
		text: a.textContent,
		elements: [...a.querySelectorAll('*')].map((e) => e.tagName + '.' + e.className + (e.style.color ? '/' + e.style.color : '')).join(' '),
		carried: b.querySelector('span') ? b.querySelector('span').style.color : 'none',
		events: events.map((e) => (e.id ?? '-') + '|' + e.event + '|' + e.data).join(' ; '),
	};
})()`

// checkRenderers: colours become classes, other escapes vanish, markup in
// text stays text, SGR state carries to the next line; SSE events survive
// any chunking, with ids, comments, CRLF and empty data lines.
func checkRenderers(t *testing.T, ctx context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got struct{ Text, Elements, Carried, Events string }
	got, err := chromedp.Run(ctx, chromedp.Evaluate[struct{ Text, Elements, Carried, Events string }](rendererCheck, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("running the renderers in the page: %v", err)
	}
	want := struct{ Text, Elements, Carried, Events string }{
		Text:     "red <b>plain</b> xy",
		Elements: "SPAN.fg-1 sgr-bold SPAN./rgb(255, 135, 0) SPAN./rgb(255, 135, 0)",
		Carried:  "rgb(255, 135, 0)",
		Events:   "1|message|<i>a</i> ; 2|message| two ; 3|message| ; -|end|",
	}
	if got != want {
		t.Errorf("renderers in the page:\n got %+v\nwant %+v", got, want)
	}
}
