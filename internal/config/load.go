package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load returns the defaults overlaid with the YAML file at path (none when
// path is "") and then with the ZEROCI_* variables of environ (as from
// os.Environ). It does not validate: apply flags with Set, then call
// Validate.
func Load(path string, environ []string) (*Config, error) {
	c := Default()
	if path != "" {
		data, err := readFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if err := c.decode(path, data); err != nil {
			return nil, err
		}
	}
	if err := c.ApplyEnv(environ); err != nil {
		return nil, err
	}
	return c, nil
}

// maxFile bounds what Load reads: a configuration is a few hundred bytes,
// and --config /dev/zero must fail, not eat the memory.
const maxFile = 1 << 20

// readFile reads path, which may be a pipe (--config <(...)), up to maxFile.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s: over %d bytes; not a configuration file", path, maxFile)
	}
	return data, nil
}

// Parse returns the defaults overlaid with the YAML document data; name is
// used in error messages ("name:LINE: ..."). Unknown keys are errors.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	if err := c.decode(name, data); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) decode(name string, data []byte) error {
	ps := &problems{c: c}
	fileErr := func(line int, msg string) error {
		ps.list = append(ps.list, Problem{Origin: fmt.Sprintf("%s:%d", name, line), Msg: msg})
		return ps.err()
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil // an empty file leaves the defaults
	} else if err != nil {
		line, msg := splitYAMLError(err.Error())
		return fileErr(line, msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fileErr(extra.Line, "more than one YAML document")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fileErr(root.Line, "the configuration must be a mapping of keys (modules, cluster, data_dir, ...)")
	}

	// Unknown keys first, with their lines: the decoder's own message for
	// them ("field x not found in type config.HTTP") speaks Go, not YAML.
	c.walkKeys(ps, name, root, reflect.TypeOf(c).Elem(), "")
	if err := ps.err(); err != nil {
		return err
	}
	if err := root.Decode(c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			line, msg := splitYAMLError(err.Error())
			return fileErr(line, msg)
		}
		for _, e := range te.Errors {
			line, msg := splitYAMLError(e)
			ps.list = append(ps.list, Problem{Origin: fmt.Sprintf("%s:%d", name, line), Msg: msg})
		}
		return ps.err()
	}
	return nil
}

// walkKeys records the line of every key under node and reports keys that
// type t (a struct) does not have.
func (c *Config) walkKeys(ps *problems, file string, node *yaml.Node, t reflect.Type, prefix string) {
	if node.Kind != yaml.MappingNode {
		return // a wrong kind is reported by Decode with its line
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + k.Value
		}
		origin := fmt.Sprintf("%s:%d", file, k.Line)
		c.setOrigin(key, origin)
		if t.Kind() != reflect.Struct {
			continue // a map: any key
		}
		f, ok := fieldByKey(t, k.Value)
		if !ok {
			ps.list = append(ps.list, Problem{Origin: origin, Key: key,
				Msg: fmt.Sprintf("unknown key (known here: %s)", strings.Join(keysOf(t), ", "))})
			continue
		}
		if f.Type.Kind() == reflect.Struct || f.Type.Kind() == reflect.Map {
			c.walkKeys(ps, file, v, f.Type, key)
		}
	}
}

// splitYAMLError turns "yaml: line 3: did not find ..." into (3, "did not find ...").
func splitYAMLError(s string) (int, string) {
	s = strings.TrimPrefix(s, "yaml: ")
	if rest, ok := strings.CutPrefix(s, "line "); ok {
		if n, msg, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				return line, msg
			}
		}
	}
	return 1, s
}

// fieldByKey finds the field of struct type t whose yaml key is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.IsExported() && yamlKey(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keysOf lists the yaml keys of struct type t, in declaration order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() {
			keys = append(keys, yamlKey(f))
		}
	}
	return keys
}

func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}
