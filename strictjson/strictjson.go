// Package strictjson decodes the JSON files and specs users write (trigger
// files, job specs) strictly, with errors that name what is wrong in the
// user's terms: the unknown field and the fields known, the field of the
// wrong type and the type wanted, the byte of a syntax error. It is a leaf:
// the standard library only.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Decode decodes one JSON object into v (a pointer to a struct), strictly:
// an unknown field, a wrong type, trailing data or a second object is an
// error that names the field, as users read it (`unknown field "shedule"
// (known: prefix, schedule, ...)`, `field "paused": want a boolean, got
// string`). Messages carry no prefix: callers say what was decoded.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return explain(err, v)
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

func explain(err error, v any) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Errorf("field %q: want %s, got %s", te.Field, kindName(te.Type), te.Value)
	case errors.As(err, &te):
		return fmt.Errorf("want a JSON object, got %s", te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no error type for this one: its text is the
		// only handle.
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return fmt.Errorf("unknown field %s (known: %s)", field, strings.Join(fieldNames(v), ", "))
	case errors.Is(err, io.EOF):
		return fmt.Errorf("empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("truncated JSON: the object does not end")
	}
	return err
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "an integer"
	}
	return t.String()
}

// fieldNames lists the JSON names of the fields of the struct v points to.
func fieldNames(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}
