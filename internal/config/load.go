package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxDocument caps a config document; anything larger is a mistake or an attack on the admin API.
const maxDocument = 16 << 20

// FieldError is one problem in a config, with where it is.
type FieldError struct {
	File string
	Line int
	Path string
	Msg  string
}

// Error formats the problem as FILE:LINE: path: reason.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config, in file order.
type Errors []*FieldError

// Error lists the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem (the admin API lists them separately).
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

type pos struct {
	file string
	line int
}

// Document is a loaded, defaulted and validated config with what it came from.
type Document struct {
	Config *Config
	// Hash identifies the config and the contents of every file it references: an identical
	// document reloads as a no-op, a changed certificate does not.
	Hash string
	// Files are the config files read, then every file the config references, as absolute paths.
	Files []string
	// policyFiles are the policy.File fields of policy configs, as written.
	policyFiles []string
	// BaseDir is the directory relative paths were resolved against.
	BaseDir string

	positions map[string]pos
	file      string
}

// Errorf returns an error positioned at path (or its nearest known parent).
func (d *Document) Errorf(path, format string, args ...any) *FieldError {
	p := d.lookup(path)
	return &FieldError{File: p.file, Line: p.line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

func (d *Document) lookup(path string) pos {
	for q := path; ; {
		if p, ok := d.positions[q]; ok {
			return p
		}
		i := strings.LastIndexAny(q, ".[")
		if i <= 0 {
			break
		}
		q = q[:i]
	}
	return pos{file: d.file}
}

// Load reads a config file, or every *.yaml/*.yml file of a directory merged by top-level key.
func Load(path string) (*Document, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("cannot read config: %v", err)}}
	}
	var files []string
	base := filepath.Dir(abs)
	if fi.IsDir() {
		base = abs
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, _ := filepath.Glob(filepath.Join(abs, pat))
			files = append(files, m...)
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, Errors{{File: path, Msg: "the config directory has no *.yaml or *.yml files"}}
		}
	} else {
		files = []string{abs}
	}
	var srcs []source
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, Errors{{File: f, Msg: fmt.Sprintf("cannot read config: %v", err)}}
		}
		srcs = append(srcs, source{name: displayName(path, f, fi.IsDir()), data: data})
	}
	d, err := parse(srcs, base)
	if err != nil {
		return nil, err
	}
	d.Files = append(append([]string{}, files...), d.Files...)
	return d, nil
}

func displayName(arg, file string, dir bool) string {
	if dir {
		return filepath.Join(arg, filepath.Base(file))
	}
	return arg
}

// Parse parses one in-memory document (YAML or JSON) named name; relative paths resolve against
// the current directory.
func Parse(name string, data []byte) (*Document, error) {
	wd, _ := os.Getwd()
	return parse([]source{{name: name, data: data}}, wd)
}

// ParseAt parses data as if it were the config file at path: relative file references resolve
// against path's directory (the admin API uses it for pushed configs).
func ParseAt(path string, data []byte) (*Document, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	d, err := parse([]source{{name: path, data: data}}, filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	d.Files = append([]string{abs}, d.Files...)
	return d, nil
}

type source struct {
	name string
	data []byte
}

func parse(srcs []source, base string) (*Document, error) {
	d := &Document{BaseDir: base, positions: map[string]pos{}, file: srcs[0].name}
	var errs Errors
	merged := map[string]any{}
	mergedFrom := map[string]string{}
	for _, s := range srcs {
		if len(s.data) > maxDocument {
			errs = append(errs, &FieldError{File: s.name, Msg: fmt.Sprintf("config is larger than %d MiB", maxDocument>>20)})
			continue
		}
		var root yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(s.data))
		if err := dec.Decode(&root); err != nil {
			if err.Error() == "EOF" {
				continue // an empty file
			}
			errs = append(errs, yamlError(s.name, err))
			continue
		}
		w := &walker{file: s.name, doc: d}
		val := w.value(&root, reflect.TypeFor[Config](), "")
		errs = append(errs, w.errs...)
		top, _ := val.(map[string]any)
		for k, v := range top {
			prev, dup := merged[k]
			if !dup {
				merged[k], mergedFrom[k] = v, s.name
				continue
			}
			switch pv := prev.(type) {
			case []any:
				if nv, ok := v.([]any); ok {
					merged[k] = append(pv, nv...)
					continue
				}
			case map[string]any:
				if nv, ok := v.(map[string]any); ok && k != "server" && k != "logging" && k != "admin" && k != "ops" {
					for nk, nvv := range nv {
						if _, clash := pv[nk]; clash {
							errs = append(errs, d.Errorf(k+"."+nk, "%s %q is also defined in %s", k, nk, mergedFrom[k]))
							continue
						}
						pv[nk] = nvv
					}
					continue
				}
			}
			errs = append(errs, d.Errorf(k, "top-level key %q is also defined in %s", k, mergedFrom[k]))
		}
	}
	// Keep going after structural errors (unknown keys are dropped, bad values nulled) so one
	// run reports every problem, not only the first kind found.
	raw, err := json.Marshal(merged)
	if err != nil {
		return nil, append(errs, &FieldError{File: d.file, Msg: err.Error()})
	}
	cfg := &Config{}
	if err := json.Unmarshal(raw, cfg); err != nil {
		if len(errs) > 0 {
			return nil, errs
		}
		return nil, Errors{{File: d.file, Msg: err.Error()}}
	}
	d.Config = cfg
	applyDefaults(cfg)
	d.resolvePaths()
	errs = append(errs, d.validate()...)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool {
			if errs[i].File != errs[j].File {
				return errs[i].File < errs[j].File
			}
			return errs[i].Line < errs[j].Line
		})
		return nil, errs
	}
	if err := d.hash(); err != nil {
		return nil, err
	}
	return d, nil
}

func yamlError(file string, err error) *FieldError {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if strings.HasPrefix(msg, "line ") {
		rest := msg[5:]
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return &FieldError{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// hash fingerprints the defaulted config plus every referenced file's contents.
func (d *Document) hash() error {
	h := sha256.New()
	canon, err := json.Marshal(d.Config)
	if err != nil {
		return err
	}
	h.Write(canon)
	for _, f := range d.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return Errors{{File: d.file, Msg: fmt.Sprintf("cannot read %s: %v", f, err)}}
		}
		fmt.Fprintf(h, "\x00%s\x00%d\x00", f, len(data))
		h.Write(data)
	}
	d.Hash = hex.EncodeToString(h.Sum(nil))
	return nil
}

// Redacted returns the config as JSON with every secret (a field tagged secret:"true") replaced.
func (d *Document) Redacted() []byte {
	var c Config
	raw, _ := json.Marshal(d.Config)
	_ = json.Unmarshal(raw, &c) // a deep copy: redaction must not touch the running config
	redact(reflect.ValueOf(&c).Elem())
	out, _ := json.MarshalIndent(&c, "", "  ")
	return out
}

func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			redact(v.Elem())
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := v.Field(i)
			if t.Field(i).Tag.Get("secret") == "true" && f.Kind() == reflect.String {
				if f.String() != "" {
					f.SetString("<redacted>")
				}
				continue
			}
			if t.Field(i).IsExported() {
				redact(f)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			redact(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if e.Kind() == reflect.Pointer || e.Kind() == reflect.Interface {
				redact(e) // map values are not addressable; pointers still reach their targets
			}
		}
	}
}
