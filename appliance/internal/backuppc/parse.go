package backuppc

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Limits that keep a hostile file from costing much.
const (
	MaxFileSize = 4 << 20 // bytes per file
	MaxDepth    = 64      // nesting of [ ] and { }
	MaxRange    = 10000   // elements of a list from ranges such as 1..5
)

// Kind is the type of a Value.
type Kind int

// Value kinds.
const (
	Undef Kind = iota
	Scalar
	Array
	Hash
)

// Value is a parsed Perl value: undef, a scalar (string or number, kept as
// written), an array or a hash (keys in file order).
type Value struct {
	Kind Kind
	S    string  // Scalar
	Num  bool    // Scalar written as a number
	List []Value // Array; for Hash, the values in the order of Keys
	Keys []string
	Line int
}

// Get returns a hash member.
func (v Value) Get(key string) (Value, bool) {
	if v.Kind != Hash {
		return Value{}, false
	}
	for i, k := range v.Keys {
		if k == key {
			return v.List[i], true
		}
	}
	return Value{}, false
}

// Float returns a scalar as a number.
func (v Value) Float() (float64, bool) {
	if v.Kind != Scalar {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v.S), 64)
	if err != nil {
		if n, err2 := strconv.ParseInt(strings.TrimSpace(v.S), 0, 64); err2 == nil {
			return float64(n), true
		}
		return 0, false
	}
	return f, true
}

// Strings returns a scalar as one string, or an array of scalars as its
// strings; ok is false for anything else.
func (v Value) Strings() ([]string, bool) {
	switch v.Kind {
	case Undef:
		return nil, true
	case Scalar:
		return []string{v.S}, true
	case Array:
		out := make([]string, 0, len(v.List))
		for _, e := range v.List {
			if e.Kind != Scalar {
				return nil, false
			}
			out = append(out, e.S)
		}
		return out, true
	}
	return nil, false
}

// String renders the value in Perl syntax, for reports.
func (v Value) String() string {
	var b strings.Builder
	v.write(&b)
	return b.String()
}

func (v Value) write(b *strings.Builder) {
	switch v.Kind {
	case Undef:
		b.WriteString("undef")
	case Scalar:
		if v.Num {
			b.WriteString(v.S)
		} else {
			b.WriteString(quote(v.S))
		}
	case Array:
		b.WriteByte('[')
		for i, e := range v.List {
			if i > 0 {
				b.WriteString(", ")
			}
			e.write(b)
		}
		b.WriteByte(']')
	case Hash:
		b.WriteByte('{')
		for i, k := range v.Keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quote(k))
			b.WriteString(" => ")
			v.List[i].write(b)
		}
		b.WriteByte('}')
	}
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Setting is one "$Conf{Name} = VALUE;".
type Setting struct {
	Name  string
	Value Value
	Line  int
}

// ParseError is a statement the parser did not understand; it was skipped.
type ParseError struct {
	File string
	Line int
	Msg  string
	Text string // the start of the statement
}

func (e *ParseError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Msg, e.Text)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// File is a parsed config file. A name set twice keeps both settings; the
// later one wins (Get), as in Perl.
type File struct {
	Name     string
	Settings []Setting
	Errors   []*ParseError
}

// Get returns the last value set for name.
func (f *File) Get(name string) (Setting, bool) {
	for i := len(f.Settings) - 1; i >= 0; i-- {
		if f.Settings[i].Name == name {
			return f.Settings[i], true
		}
	}
	return Setting{}, false
}

// Parse parses a config file named name. The error is only for a file too
// large to parse at all; statements it does not understand are in
// File.Errors.
func Parse(name string, data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a BackupPC config file may have", name, len(data), MaxFileSize)
	}
	p := &parser{file: name, src: data, line: 1}
	f := &File{Name: name}
	for {
		p.space()
		if p.pos >= len(p.src) {
			return f, nil
		}
		start, startLine := p.pos, p.line
		st, err := p.statement()
		if err != nil {
			pe := &ParseError{File: name, Line: startLine, Msg: err.Error(), Text: snippet(data[start:])}
			if le, ok := err.(*lineErr); ok {
				pe.Msg = le.msg
			}
			f.Errors = append(f.Errors, pe)
			p.pos, p.line = start, startLine
			if !p.skipStatement() {
				return f, nil
			}
			continue
		}
		if st != nil {
			f.Settings = append(f.Settings, *st)
		}
	}
}

func snippet(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	s := strings.TrimSpace(string(b))
	if r := []rune(s); len(r) > 80 {
		s = string(r[:80]) + "…"
	}
	return s
}

type lineErr struct{ msg string }

func (e *lineErr) Error() string { return e.msg }

func errf(format string, args ...any) error { return &lineErr{fmt.Sprintf(format, args...)} }

type parser struct {
	file  string
	src   []byte
	pos   int
	line  int
	depth int
}

func (p *parser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *parser) advance() byte {
	c := p.src[p.pos]
	p.pos++
	if c == '\n' {
		p.line++
	}
	return c
}

// space skips white space and # comments.
func (p *parser) space() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			p.advance()
		default:
			return
		}
	}
}

func (p *parser) lit(s string) bool {
	if bytes.HasPrefix(p.src[p.pos:], []byte(s)) {
		for range len(s) {
			p.advance()
		}
		return true
	}
	return false
}

func isIdent(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

func (p *parser) ident() string {
	s := p.pos
	for p.pos < len(p.src) && isIdent(p.src[p.pos], p.pos == s) {
		p.pos++
	}
	return string(p.src[s:p.pos])
}

// statement parses one statement; nil, nil for an ignorable one ("1;").
func (p *parser) statement() (*Setting, error) {
	line := p.line
	if c := p.peek(); c >= '0' && c <= '9' { // "1;" at the end of a file
		if _, err := p.value(); err != nil {
			return nil, err
		}
		p.space()
		if !p.lit(";") {
			return nil, errf("want ';' after the number")
		}
		return nil, nil
	}
	if !p.lit("$Conf{") {
		return nil, errf("not a $Conf{Name} = VALUE; statement")
	}
	p.space()
	var name string
	switch p.peek() {
	case '\'', '"':
		v, err := p.scalarString()
		if err != nil {
			return nil, err
		}
		name = v
	default:
		name = p.ident()
	}
	if name == "" {
		return nil, errf("want a setting name in $Conf{…}")
	}
	p.space()
	if !p.lit("}") {
		return nil, errf("want '}' after $Conf{%s", name)
	}
	p.space()
	if c := p.peek(); c == '{' || c == '[' || c == '-' {
		return nil, errf("assignment to a part of $Conf{%s} is not supported", name)
	}
	if !p.lit("=") || p.peek() == '=' || p.peek() == '~' {
		return nil, errf("want '=' after $Conf{%s}", name)
	}
	p.space()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if !p.lit(";") {
		return nil, errf("$Conf{%s}: want ';' after the value (an expression beyond the supported subset?)", name)
	}
	return &Setting{Name: name, Value: v, Line: line}, nil
}

// value parses a term, with "." concatenation of scalars.
func (p *parser) value() (Value, error) {
	v, err := p.term()
	if err != nil {
		return v, err
	}
	for {
		save, saveLine := p.pos, p.line
		p.space()
		if p.peek() != '.' || (p.pos+1 < len(p.src) && (p.src[p.pos+1] == '.' || (p.src[p.pos+1] >= '0' && p.src[p.pos+1] <= '9'))) {
			p.pos, p.line = save, saveLine
			return v, nil
		}
		p.advance()
		p.space()
		w, err := p.term()
		if err != nil {
			return v, err
		}
		if v.Kind != Scalar || w.Kind != Scalar {
			return v, errf("'.' joins only strings and numbers")
		}
		v = Value{Kind: Scalar, S: v.S + w.S, Line: v.Line}
	}
}

func (p *parser) term() (Value, error) {
	line := p.line
	c := p.peek()
	switch {
	case c == '\'' || c == '"':
		s, err := p.scalarString()
		return Value{Kind: Scalar, S: s, Line: line}, err
	case c == '[':
		return p.array()
	case c == '{':
		return p.hash()
	case c == '-' || c == '+' || (c >= '0' && c <= '9') || c == '.':
		return p.number()
	case c == '<' && bytes.HasPrefix(p.src[p.pos:], []byte("<<")):
		return Value{}, errf("heredocs are not supported")
	case c == '`':
		return Value{}, errf("commands in backticks are never run")
	case c == '$' || c == '@' || c == '%':
		return Value{}, errf("references to other variables are not evaluated")
	case isIdent(c, true):
		save, saveLine := p.pos, p.line
		w := p.ident()
		switch w {
		case "undef":
			return Value{Kind: Undef, Line: line}, nil
		case "q", "qq", "qw":
			p.space()
			d := p.peek()
			if d == 0 || d == '=' || d == ',' || d == ';' || isIdent(d, false) {
				break
			}
			body, err := p.delimited()
			if err != nil {
				return Value{}, err
			}
			switch w {
			case "q":
				return Value{Kind: Scalar, S: body, Line: line}, nil
			case "qq":
				s, err := unescapeDouble(body)
				return Value{Kind: Scalar, S: s, Line: line}, err
			default:
				v := Value{Kind: Array, Line: line}
				for _, f := range strings.Fields(body) {
					v.List = append(v.List, Value{Kind: Scalar, S: f, Line: line})
				}
				return v, nil
			}
		}
		p.pos, p.line = save, saveLine
		return Value{}, errf("%q: function calls and barewords are not evaluated", w)
	case c == 0:
		return Value{}, errf("unexpected end of file")
	}
	return Value{}, errf("unexpected %q", string(c))
}

func (p *parser) number() (Value, error) {
	line := p.line
	s := p.pos
	if c := p.peek(); c == '-' || c == '+' {
		p.pos++
	}
	if bytes.HasPrefix(p.src[p.pos:], []byte("0x")) || bytes.HasPrefix(p.src[p.pos:], []byte("0X")) {
		p.pos += 2
		for p.pos < len(p.src) && strings.IndexByte("0123456789abcdefABCDEF_", p.src[p.pos]) >= 0 {
			p.pos++
		}
	} else {
		for p.pos < len(p.src) && strings.IndexByte("0123456789._eE", p.src[p.pos]) >= 0 {
			if p.src[p.pos] == '.' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '.' {
				break // a range, 1..5
			}
			if (p.src[p.pos] == 'e' || p.src[p.pos] == 'E') && p.pos+1 < len(p.src) && (p.src[p.pos+1] == '-' || p.src[p.pos+1] == '+') {
				p.pos++
			}
			p.pos++
		}
	}
	txt := strings.ReplaceAll(string(p.src[s:p.pos]), "_", "")
	if n, err := strconv.ParseInt(txt, 0, 64); err == nil {
		return Value{Kind: Scalar, S: strconv.FormatInt(n, 10), Num: true, Line: line}, nil
	}
	if _, err := strconv.ParseFloat(txt, 64); err != nil || txt == "" {
		return Value{}, errf("bad number %q", string(p.src[s:p.pos]))
	}
	return Value{Kind: Scalar, S: strings.TrimPrefix(txt, "+"), Num: true, Line: line}, nil
}

// scalarString parses '…' or "…".
func (p *parser) scalarString() (string, error) {
	q := p.advance()
	var b []byte
	for {
		if p.pos >= len(p.src) {
			return "", errf("string not closed")
		}
		c := p.advance()
		if c == q {
			break
		}
		if c == '\\' && p.pos < len(p.src) {
			n := p.advance()
			if q == '\'' && n != '\\' && n != '\'' {
				b = append(b, '\\')
			}
			if q == '"' {
				b = append(b, '\\')
			}
			b = append(b, n)
			continue
		}
		b = append(b, c)
	}
	if q == '"' {
		return unescapeDouble(string(b))
	}
	return string(b), nil
}

// unescapeDouble resolves the escapes of a double-quoted string; a $ or @
// that Perl would interpolate is an error.
func unescapeDouble(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '0':
				b.WriteByte(0)
			case 'e':
				b.WriteByte(27)
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		if (c == '$' || c == '@') && i+1 < len(s) && (isIdent(s[i+1], true) || s[i+1] == '{' || s[i+1] == ':') {
			return "", errf("double-quoted string interpolates %c%s…: not evaluated", c, string(s[i+1]))
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

var closer = map[byte]byte{'(': ')', '[': ']', '{': '}', '<': '>'}

// delimited reads the body of q/qq/qw with any delimiter; bracketing
// delimiters nest.
func (p *parser) delimited() (string, error) {
	open := p.advance()
	cl, nests := closer[open]
	if !nests {
		cl = open
	}
	depth := 1
	var b []byte
	for {
		if p.pos >= len(p.src) {
			return "", errf("q%c…%c not closed", open, cl)
		}
		c := p.advance()
		if c == '\\' && p.pos < len(p.src) {
			n := p.advance()
			if n != open && n != cl && n != '\\' {
				b = append(b, '\\')
			}
			b = append(b, n)
			continue
		}
		if nests && c == open {
			depth++
		} else if c == cl {
			depth--
			if depth == 0 {
				return string(b), nil
			}
		}
		b = append(b, c)
	}
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		return errf("nested deeper than %d", MaxDepth)
	}
	return nil
}

func (p *parser) array() (Value, error) {
	v := Value{Kind: Array, Line: p.line, List: []Value{}}
	if err := p.enter(); err != nil {
		return v, err
	}
	defer func() { p.depth-- }()
	p.advance() // [
	for {
		p.space()
		if p.lit("]") {
			return v, nil
		}
		e, err := p.value()
		if err != nil {
			return v, err
		}
		p.space()
		if p.lit("..") {
			p.space()
			hi, err := p.value()
			if err != nil {
				return v, err
			}
			lo, err1 := strconv.Atoi(e.S)
			h, err2 := strconv.Atoi(hi.S)
			if !e.Num || !hi.Num || err1 != nil || err2 != nil || h-lo > MaxRange || len(v.List)+h-lo > MaxRange {
				return v, errf("range %s..%s: want whole numbers at most %d apart", e.S, hi.S, MaxRange)
			}
			for n := lo; n <= h; n++ {
				v.List = append(v.List, Value{Kind: Scalar, S: strconv.Itoa(n), Num: true, Line: e.Line})
			}
		} else {
			v.List = append(v.List, e)
		}
		p.space()
		if p.lit("]") {
			return v, nil
		}
		if !p.lit(",") && !p.lit("=>") {
			return v, errf("in a list: want ',' or ']'")
		}
	}
}

func (p *parser) hash() (Value, error) {
	v := Value{Kind: Hash, Line: p.line, List: []Value{}, Keys: []string{}}
	if err := p.enter(); err != nil {
		return v, err
	}
	defer func() { p.depth-- }()
	p.advance() // {
	for {
		p.space()
		if p.lit("}") {
			return v, nil
		}
		var key string
		switch c := p.peek(); {
		case c == '\'' || c == '"':
			s, err := p.scalarString()
			if err != nil {
				return v, err
			}
			key = s
		case isIdent(c, true) || c == '-':
			if c == '-' {
				p.pos++
			}
			key = p.ident()
			if key == "" {
				return v, errf("in a hash: bad key")
			}
			if c == '-' {
				key = "-" + key
			}
		case c >= '0' && c <= '9':
			n, err := p.number()
			if err != nil {
				return v, err
			}
			key = n.S
		default:
			return v, errf("in a hash: want a key, got %q", string(c))
		}
		p.space()
		if !p.lit("=>") && !p.lit(",") {
			return v, errf("in a hash: want '=>' after key %q", key)
		}
		p.space()
		e, err := p.value()
		if err != nil {
			return v, err
		}
		v.Keys = append(v.Keys, key)
		v.List = append(v.List, e)
		p.space()
		if p.lit("}") {
			return v, nil
		}
		if !p.lit(",") && !p.lit("=>") {
			return v, errf("in a hash: want ',' or '}'")
		}
	}
}

// skipStatement moves past the ';' that ends the statement at p.pos,
// outside strings, comments and brackets, then past the bodies of any
// heredocs it started. It reports false at the end of the input.
func (p *parser) skipStatement() bool {
	depth := 0
	var heredocs []string
	for p.pos < len(p.src) {
		c := p.advance()
		switch {
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		case c == '\'' || c == '"' || c == '`':
			p.pos--
			p.skipQuoted(c)
		case c == '$' && p.peek() == '#':
			p.pos++
		case c == '<' && p.peek() == '<':
			p.pos++
			if p.peek() == '~' {
				p.pos++
			}
			q := p.peek()
			if q == '"' || q == '\'' {
				p.pos++
			}
			if id := p.ident(); id != "" {
				heredocs = append(heredocs, id)
				if q == '"' || q == '\'' {
					if p.peek() == q {
						p.pos++
					}
				}
			}
		case c == 'q' && (p.pos < 2 || !isIdent(p.src[p.pos-2], false)):
			s := p.pos
			if p.peek() == 'q' || p.peek() == 'w' || p.peek() == 'x' {
				p.pos++
			}
			if d := p.peek(); d != 0 && strings.IndexByte("({[</|!", d) >= 0 {
				if _, err := p.delimited(); err != nil {
					return false
				}
			} else {
				p.pos = s
			}
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			if depth > 0 {
				depth--
			}
		case c == ';' && depth == 0:
			if len(heredocs) > 0 {
				p.skipHeredocs(heredocs)
			}
			return true
		}
	}
	return false
}

func (p *parser) skipQuoted(q byte) {
	p.advance()
	for p.pos < len(p.src) {
		c := p.advance()
		if c == '\\' && p.pos < len(p.src) {
			p.advance()
			continue
		}
		if c == q {
			return
		}
	}
}

// skipHeredocs skips the rest of the current line and then one body per
// terminator.
func (p *parser) skipHeredocs(ids []string) {
	for p.pos < len(p.src) && p.src[p.pos] != '\n' {
		p.pos++
	}
	for _, id := range ids {
		for p.pos < len(p.src) {
			p.advance() // the '\n'
			e := bytes.IndexByte(p.src[p.pos:], '\n')
			if e < 0 {
				e = len(p.src) - p.pos
			}
			l := strings.TrimSpace(string(p.src[p.pos : p.pos+e]))
			p.pos += e
			if l == id {
				break
			}
		}
	}
}
