package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// jsonError is a JSON syntax error at a line.
type jsonError struct {
	line int
	msg  string
}

func (e *jsonError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// maxJSONDepth bounds the nesting of a JSON file; a pipeline needs 6.
const maxJSONDepth = 64

// parseJSON turns a JSON document into the yaml.Node tree the YAML path
// builds, with the line of every value and key, so both syntaxes share
// one set of rules. Duplicate keys are kept for the parser to report.
func parseJSON(data []byte) (*yaml.Node, error) {
	c := &jsonConv{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	c.dec.UseNumber()
	for i, b := range data {
		if b == '\n' {
			c.lineStarts = append(c.lineStarts, i+1)
		}
	}
	n, err := c.value(0)
	if err != nil {
		return nil, c.wrap(err)
	}
	if _, err := c.dec.Token(); err != io.EOF {
		return nil, &jsonError{line: c.line(c.next()), msg: "unexpected data after the top-level value"}
	}
	return n, nil
}

type jsonConv struct {
	data       []byte
	dec        *json.Decoder
	lineStarts []int // offsets of the second, third... lines
}

// line returns the 1-based line of byte offset off.
func (c *jsonConv) line(off int) int {
	return sort.SearchInts(c.lineStarts, off+1) + 1
}

// next returns the offset of the next token: the decoder's offset past
// whitespace, ':' and ','.
func (c *jsonConv) next() int {
	off := int(c.dec.InputOffset())
	for off < len(c.data) && strings.IndexByte(" \t\r\n:,", c.data[off]) >= 0 {
		off++
	}
	return off
}

func (c *jsonConv) wrap(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &jsonError{line: c.line(int(se.Offset)), msg: se.Error()}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &jsonError{line: c.line(len(c.data)), msg: "unexpected end of JSON input"}
	}
	return err
}

func (c *jsonConv) value(depth int) (*yaml.Node, error) {
	if depth > maxJSONDepth {
		return nil, &jsonError{line: c.line(c.next()), msg: fmt.Sprintf("nested deeper than %d levels", maxJSONDepth)}
	}
	line := c.line(c.next())
	tok, err := c.dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
			for c.dec.More() {
				kline := c.line(c.next())
				ktok, err := c.dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := ktok.(string)
				if !ok {
					return nil, &jsonError{line: kline, msg: "object key is not a string"}
				}
				v, err := c.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k, Line: kline, Style: yaml.DoubleQuotedStyle}, v)
			}
			if _, err := c.dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line}
			for c.dec.More() {
				v, err := c.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
			if _, err := c.dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
		return nil, &jsonError{line: line, msg: fmt.Sprintf("unexpected %q", rune(t))}
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t, Line: line, Style: yaml.DoubleQuotedStyle}, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(t), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(t), Line: line}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(t), Line: line}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null", Line: line}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}
