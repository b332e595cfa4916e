package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

func marshalStatus(st Status) ([]byte, error) {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("jobs: status: %w", err)
	}
	return append(data, '\n'), nil
}

// DecodeSpec decodes a JSON spec into v (a pointer to a struct), strictly:
// an unknown field, a wrong type, trailing data or a second object is an
// error that names the field, as users read it ("unknown field
// \"shedule\"", "field \"paused\": want a boolean").
func DecodeSpec(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return specError(err, v)
	}
	if dec.More() {
		return fmt.Errorf("spec: data after the JSON object")
	}
	return nil
}

func specError(err error, v any) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Errorf("spec: field %q: want %s, got %s", te.Field, kindName(te.Type), te.Value)
	case errors.As(err, &te):
		return fmt.Errorf("spec: want a JSON object, got %s", te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("spec: invalid JSON at byte %d: %v", se.Offset, se)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no error type for this one: its text is the
		// only handle.
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return fmt.Errorf("spec: unknown field %s (known: %s)", field, strings.Join(fieldNames(v), ", "))
	case err.Error() == "EOF":
		return fmt.Errorf("spec: empty")
	}
	return fmt.Errorf("spec: %v", err)
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
