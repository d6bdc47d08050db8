// Server-sent events over fetch(): EventSource cannot send an
// Authorization header, so the stream is read with a ReadableStream and
// parsed here (https://html.spec.whatwg.org/multipage/server-sent-events.html).

// SSEParser turns chunks of an event stream into events. Lines end in LF
// or CRLF; a lone CR is kept as text, since log lines may contain one.
export class SSEParser {
  // dispatch is called with {id, event, data, hasData} for each event.
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buf = '';
    this.reset();
  }

  reset() {
    this.data = [];
    this.event = '';
    this.id = undefined;
    this.any = false;
  }

  // push feeds the next chunk of decoded text.
  push(chunk) {
    this.buf += chunk;
    let start = 0;
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n', start)) {
      let line = this.buf.slice(start, nl);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      start = nl + 1;
      this.line(line);
    }
    this.buf = this.buf.slice(start);
  }

  line(line) {
    if (line === '') {
      if (this.any) {
        this.dispatch({ id: this.id, event: this.event || 'message', data: this.data.join('\n'), hasData: this.data.length > 0 });
      }
      this.reset();
      return;
    }
    if (line.startsWith(':')) return; // a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data': this.data.push(value); this.any = true; break;
      case 'event': this.event = value; this.any = true; break;
      case 'id': if (!value.includes('\0')) { this.id = value; this.any = true; } break;
      default: break; // retry and unknown fields
    }
  }
}

// HTTPError is a refused stream: the caller decides (401: log in again).
export class HTTPError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

// readSSE follows the event stream at url until an "end" event, a 4xx
// answer (thrown as HTTPError) or signal aborts. A dropped connection is
// reopened with Last-Event-ID set to the last id seen, so nothing is lost
// or repeated. opts: token() for the bearer token, signal, onEvent(ev),
// onOpen() after each (re)connection, lastEventId to start after.
export async function readSSE(url, { token, signal, onEvent, onOpen, lastEventId = '', retryMs = 1000 }) {
  let last = lastEventId;
  while (!signal?.aborted) {
    let ended = false;
    try {
      const headers = { Accept: 'text/event-stream' };
      const tok = token?.();
      if (tok) headers.Authorization = 'Bearer ' + tok;
      if (last !== '') headers['Last-Event-ID'] = last;
      const resp = await fetch(url, { headers, signal, cache: 'no-store' });
      if (!resp.ok) {
        let body = {};
        try { body = await resp.json(); } catch { /* not JSON */ }
        const err = new HTTPError(resp.status, body.code || '', body.error || `${resp.status} ${resp.statusText}`);
        if (resp.status < 500) throw err;
      } else {
        onOpen?.();
        const parser = new SSEParser((ev) => {
          if (ev.id !== undefined) last = ev.id;
          if (ev.event === 'end') ended = true;
          onEvent(ev);
        });
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
        }
        if (ended) return;
      }
    } catch (err) {
      if (signal?.aborted) return;
      if (err instanceof HTTPError) throw err;
      // a network error: reconnect below
    }
    await sleep(retryMs, signal);
  }
}
