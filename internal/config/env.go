package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// EnvPrefix starts every configuration variable.
const EnvPrefix = "ZEROCI_"

// EnvName returns the environment variable that overrides key: the dotted
// key in upper case with dots as underscores, after ZEROCI_
// ("cluster.endpoints.blob" → ZEROCI_CLUSTER_ENDPOINTS_BLOB).
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Keys returns every settable key, dotted, in declaration order: the leaves
// of the configuration (lists and maps are leaves).
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for _, k := range keysOf(t) {
			f, _ := fieldByKey(t, k)
			if prefix != "" {
				k = prefix + "." + k
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, k)
				continue
			}
			keys = append(keys, k)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return keys
}

// ApplyEnv overrides keys from environ ("NAME=value" entries, as from
// os.Environ) with the variables named by EnvName. An empty value counts as
// unset. Lists are comma separated (ZEROCI_MODULES=api,jobs), maps are
// comma separated k=v pairs (ZEROCI_JOBS_LABELS=arch=amd64,os=linux).
// A variable that starts like a section (ZEROCI_HTTP_...) but names no key
// is an error, to catch typos; other ZEROCI_ variables (ZEROCI_SERVER,
// ZEROCI_TOKEN, ...) belong to other commands and are ignored.
func (c *Config) ApplyEnv(environ []string) error {
	byEnv := make(map[string]string)
	for _, k := range Keys() {
		byEnv[EnvName(k)] = k
	}
	var sections []string
	t := reflect.TypeOf(Config{})
	for _, k := range keysOf(t) {
		if f, _ := fieldByKey(t, k); f.Type.Kind() == reflect.Struct {
			sections = append(sections, EnvName(k)+"_")
		}
	}

	ps := &problems{c: c}
	env := slices.Clone(environ)
	slices.Sort(env) // stable problem order
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || value == "" {
			continue
		}
		key, known := byEnv[name]
		if !known {
			for _, s := range sections {
				if strings.HasPrefix(name, s) {
					ps.list = append(ps.list, Problem{Origin: "$" + name,
						Msg: fmt.Sprintf("unknown setting (known in this section: %s)", strings.Join(envNamesWithPrefix(byEnv, s), ", "))})
				}
			}
			continue
		}
		if err := c.Set(key, value, "$"+name); err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				return err
			}
			ps.list = append(ps.list, ce.Problems...)
		}
	}
	return ps.err()
}

func envNamesWithPrefix(byEnv map[string]string, prefix string) []string {
	var names []string
	for n := range byEnv {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Set sets the dotted key ("http.addr") from its string form, the way the
// environment and flags do, and records origin ("--http") as where the
// value came from. Errors are *Error (ErrInvalid).
func (c *Config) Set(key, value, origin string) error {
	fail := func(format string, args ...any) error {
		return &Error{Problems: []Problem{{Origin: origin, Key: key, Msg: fmt.Sprintf(format, args...)}}}
	}
	v := reflect.ValueOf(c).Elem()
	for _, part := range strings.Split(key, ".") {
		if v.Kind() != reflect.Struct {
			return fail("unknown key")
		}
		f, ok := fieldByKey(v.Type(), part)
		if !ok {
			return fail("unknown key")
		}
		v = v.FieldByIndex(f.Index)
	}
	switch {
	case v.Kind() == reflect.String:
		v.SetString(strings.TrimSpace(value))
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil || v.OverflowInt(n) {
			return fail("%q is not a whole number", value)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(value))
		if err != nil {
			return fail("%q is not a boolean (want true or false)", value)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		v.Set(reflect.ValueOf(splitList(value)))
	case v.Kind() == reflect.Map && v.Type().Elem().Kind() == reflect.String:
		m := make(map[string]string)
		for _, pair := range splitList(value) {
			k, val, ok := strings.Cut(pair, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return fail("%q is not a k=v pair (want k=v,k2=v2)", pair)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		v.Set(reflect.ValueOf(m))
	default:
		return fail("is a section, not a value; set its keys")
	}
	c.setOrigin(key, origin)
	return nil
}

// splitList splits a comma separated list, trimming blanks and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
