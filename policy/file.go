package policy

import (
	"path/filepath"
	"reflect"
)

// File is a file path in a policy's config (an htpasswd file, public keys, a CA bundle). Use it
// instead of string for such fields: the config loader then resolves it against the config's
// directory, watches the file, and includes its contents in the config hash, so editing the file
// reloads the policy like editing the config does.
type File string

// Path returns the file's path, resolved against baseDir when relative.
func (f File) Path(baseDir string) string {
	p := string(f)
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(baseDir, p)
}

var fileType = reflect.TypeFor[File]()

// filesOf returns every non-empty File reachable from v (fields, slices, maps, pointers).
func filesOf(v reflect.Value, out []string) []string {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			out = filesOf(v.Elem(), out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				out = filesOf(v.Field(i), out)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			out = filesOf(v.Index(i), out)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			out = filesOf(v.MapIndex(k), out)
		}
	case reflect.String:
		if v.Type() == fileType && v.String() != "" {
			out = append(out, v.String())
		}
	}
	return out
}
