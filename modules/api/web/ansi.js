// ANSI colours in log lines: SGR sequences (ESC [ ... m) become spans with
// classes or CSSOM styles; every other escape sequence is dropped. Text is
// only ever set as text nodes, never parsed as markup.

// newState is the SGR state; it carries from one line to the next, as in
// a terminal.
export function newState() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
}

// The 256-colour palette beyond the 16 named colours.
function color256(n) {
  if (n < 16) return n;
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255];
    const i = n - 16;
    return `rgb(${v[Math.floor(i / 36)]},${v[Math.floor(i / 6) % 6]},${v[i % 6]})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

// applySGR updates state with the parameters of one SGR sequence.
export function applySGR(state, params) {
  const p = params === '' ? [0] : params.split(/[;:]/).map((x) => (x === '' ? 0 : Number(x)));
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === 0) Object.assign(state, newState());
    else if (c === 1) state.bold = true;
    else if (c === 2) state.dim = true;
    else if (c === 3) state.italic = true;
    else if (c === 4) state.underline = true;
    else if (c === 22) { state.bold = false; state.dim = false; }
    else if (c === 23) state.italic = false;
    else if (c === 24) state.underline = false;
    else if (c >= 30 && c <= 37) state.fg = c - 30;
    else if (c >= 90 && c <= 97) state.fg = c - 90 + 8;
    else if (c === 39) state.fg = null;
    else if (c >= 40 && c <= 47) state.bg = c - 40;
    else if (c >= 100 && c <= 107) state.bg = c - 100 + 8;
    else if (c === 49) state.bg = null;
    else if ((c === 38 || c === 48) && p[i + 1] === 5 && i + 2 < p.length) {
      const v = color256(p[i + 2] & 255);
      if (c === 38) state.fg = v; else state.bg = v;
      i += 2;
    } else if ((c === 38 || c === 48) && p[i + 1] === 2 && i + 4 < p.length) {
      const v = `rgb(${p[i + 2] & 255},${p[i + 3] & 255},${p[i + 4] & 255})`;
      if (c === 38) state.fg = v; else state.bg = v;
      i += 4;
    }
  }
}

function plain(state) {
  return state.fg === null && state.bg === null && !state.bold && !state.dim && !state.italic && !state.underline;
}

// span returns text styled as state says: a text node when unstyled.
function span(text, state) {
  if (plain(state)) return document.createTextNode(text);
  const el = document.createElement('span');
  el.textContent = text;
  const cls = [];
  if (typeof state.fg === 'number') cls.push('fg-' + state.fg);
  else if (state.fg) el.style.color = state.fg;
  if (typeof state.bg === 'number') cls.push('bg-' + state.bg);
  else if (state.bg) el.style.backgroundColor = state.bg;
  if (state.bold) cls.push('sgr-bold');
  if (state.dim) cls.push('sgr-dim');
  if (state.italic) cls.push('sgr-italic');
  if (state.underline) cls.push('sgr-underline');
  if (cls.length) el.className = cls.join(' ');
  return el;
}

// CSI sequences (ESC [ params final), OSC sequences (ESC ] ... BEL or ST)
// and two-character escapes.
const ESC = /\x1b(?:\[([0-9;:?<=>]*)([\x20-\x2f]*)([\x40-\x7e])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x40-\x5f])/g;

// renderLine appends the nodes of one log line to parent, updating state.
export function renderLine(parent, text, state) {
  let at = 0;
  ESC.lastIndex = 0;
  for (let m = ESC.exec(text); m; m = ESC.exec(text)) {
    if (m.index > at) parent.append(span(text.slice(at, m.index), state));
    if (m[3] === 'm' && m[2] === '' && !/[?<=>]/.test(m[1] ?? '')) applySGR(state, m[1]);
    at = ESC.lastIndex;
  }
  if (at < text.length) parent.append(span(text.slice(at), state));
}
