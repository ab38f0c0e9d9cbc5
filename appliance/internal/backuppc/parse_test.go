package backuppc

import (
	"reflect"
	"strings"
	"testing"
)

func mustParse(t *testing.T, src string) *File {
	t.Helper()
	f, err := Parse("t.pl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestParseValues(t *testing.T) {
	src := `# comment
$Conf{XferMethod} = 'rsyncd';   # trailing comment
$Conf{'Quoted'} = "a\tb \$x \@y";
$Conf{Num} = -1;
$Conf{Float} = 0.97;
$Conf{Hex} = 0x1F;
$Conf{Exp} = 1e3;
$Conf{Undef} = undef;
$Conf{Esc} = 'it\'s a \\ and \n';
$Conf{Q} = q{a {nested} b};
$Conf{QW} = qw(one two
   three);
$Conf{Cat} = '/usr/bin/env'
      . " --totals" . 2;
$Conf{List} = [
    '/home', "/etc",   # comment inside
    [1, 2,], [0 .. 2, 6],
];
$Conf{Hash} = {
    hourBegin => 7.0,
    'hourEnd' => 19.5,
    "weekDays" => [1, 2, 3, 4, 5],
    -opt => { deep => [ {}, [] ] },
    42 => 'n',
};
1;
`
	f := mustParse(t, src)
	if len(f.Errors) != 0 {
		t.Fatalf("errors: %v", f.Errors)
	}
	want := map[string]string{
		"XferMethod": `'rsyncd'`,
		"Quoted":     "'a\tb $x @y'",
		"Num":        "-1",
		"Float":      "0.97",
		"Hex":        "31",
		"Exp":        "1e3",
		"Undef":      "undef",
		"Esc":        `'it\'s a \\ and \\n'`,
		"Q":          "'a {nested} b'",
		"QW":         "['one', 'two', 'three']",
		"Cat":        "'/usr/bin/env --totals2'",
		"List":       "['/home', '/etc', [1, 2], [0, 1, 2, 6]]",
		"Hash":       "{'hourBegin' => 7.0, 'hourEnd' => 19.5, 'weekDays' => [1, 2, 3, 4, 5], '-opt' => {'deep' => [{}, []]}, '42' => 'n'}",
	}
	if len(f.Settings) != len(want) {
		t.Fatalf("%d settings, want %d: %+v", len(f.Settings), len(want), f.Settings)
	}
	for name, w := range want {
		st, ok := f.Get(name)
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if got := st.Value.String(); got != w {
			t.Errorf("%s = %s, want %s", name, got, w)
		}
	}
	if st, _ := f.Get("List"); st.Line != 15 {
		t.Errorf("List on line %d, want 15", st.Line)
	}
	h, _ := f.Get("Hash")
	wd, _ := h.Value.Get("weekDays")
	if days, ok := wd.Strings(); !ok || strings.Join(days, ",") != "1,2,3,4,5" {
		t.Errorf("weekDays %v %v", days, ok)
	}
	if hb, _ := h.Value.Get("hourBegin"); func() float64 { f, _ := hb.Float(); return f }() != 7 {
		t.Errorf("hourBegin %v", hb)
	}
}

// TestParseRefuses: what is beyond the subset is reported with file:line
// and the text, skipped whole (heredoc bodies too), and parsing goes on.
func TestParseRefuses(t *testing.T) {
	src := "$ENV{'PATH'} = '/bin';\n" + // 1
		"$Conf{ServerHost} = `hostname`;\n" + // 2
		"chomp($Conf{ServerHost});\n" + // 3
		"$Conf{SshPath} = '/usr/bin/ssh' if -x '/usr/bin/ssh';\n" + // 4
		"$Conf{EMailHeaders} = <<EOF;\n" + // 5
		"MIME-Version: 1.0\n$Conf{Fake} = 'in heredoc';\nEOF\n" + // 6-8
		"$Conf{CgiURL} = 'http://'.$Conf{ServerHost}.'/x';\n" + // 9
		"$Conf{Interp} = \"$host:/\";\n" + // 10
		"$Conf{Part}{x} = 1;\n" + // 11
		"$Conf{Call} = lc('X');\n" + // 12
		"$Conf{Good} = ['a;b', q{;}, \"}\"];\n" + // 13
		"$Conf{Semi} = 'a' # no semicolon; in a comment\n  ;\n" + // 14-15
		"system('rm -rf /'); $Conf{After} = 2;\n" // 16
	f := mustParse(t, src)
	var got []string
	for _, e := range f.Errors {
		got = append(got, e.Error())
	}
	want := []string{
		"t.pl:1: not a $Conf{Name} = VALUE; statement: $ENV{'PATH'} = '/bin';",
		"t.pl:2: commands in backticks are never run: $Conf{ServerHost} = `hostname`;",
		"t.pl:3: not a $Conf{Name} = VALUE; statement: chomp($Conf{ServerHost});",
		"t.pl:4: $Conf{SshPath}: want ';' after the value (an expression beyond the supported subset?): $Conf{SshPath} = '/usr/bin/ssh' if -x '/usr/bin/ssh';",
		"t.pl:5: heredocs are not supported: $Conf{EMailHeaders} = <<EOF;",
		"t.pl:9: references to other variables are not evaluated: $Conf{CgiURL} = 'http://'.$Conf{ServerHost}.'/x';",
		`t.pl:10: double-quoted string interpolates $h…: not evaluated: $Conf{Interp} = "$host:/";`,
		"t.pl:11: assignment to a part of $Conf{Part} is not supported: $Conf{Part}{x} = 1;",
		`t.pl:12: "lc": function calls and barewords are not evaluated: $Conf{Call} = lc('X');`,
		"t.pl:16: not a $Conf{Name} = VALUE; statement: system('rm -rf /'); $Conf{After} = 2;",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var names []string
	for _, s := range f.Settings {
		names = append(names, s.Name+"="+s.Value.String())
	}
	if w := "Good=['a;b', ';', '}'] Semi='a' After=2"; strings.Join(names, " ") != w {
		t.Fatalf("settings %q, want %q", strings.Join(names, " "), w)
	}
}

func TestParseLimits(t *testing.T) {
	if _, err := Parse("big.pl", make([]byte, MaxFileSize+1)); err == nil || !strings.Contains(err.Error(), "big.pl") {
		t.Fatalf("oversized file: %v", err)
	}
	deep := "$Conf{D} = " + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + ";\n$Conf{E} = 1;"
	f := mustParse(t, deep)
	if len(f.Errors) != 1 || !strings.Contains(f.Errors[0].Error(), "nested deeper") || len(f.Settings) != 1 || f.Settings[0].Name != "E" {
		t.Fatalf("deep: %v %+v", f.Errors, f.Settings)
	}
	f = mustParse(t, "$Conf{R} = [1..100000];")
	if len(f.Errors) != 1 || !strings.Contains(f.Errors[0].Error(), "range 1..100000") {
		t.Fatalf("huge range: %v", f.Errors)
	}
	f = mustParse(t, "$Conf{X} = 'never closed;\n")
	if len(f.Errors) != 1 || f.Errors[0].Line != 1 || len(f.Settings) != 0 {
		t.Fatalf("unclosed: %v %+v", f.Errors, f.Settings)
	}
}

func TestParseHosts(t *testing.T) {
	src := "host        dhcp    user    moreUsers     # <--- do not edit this line\n" +
		"#farside    0       craig   jill,jeff     # <--- example static IP host entry\n" +
		"localhost   0       backuppc\n\n" +
		"laptop 1 craig jill,jeff\n" +
		"bad 2\n" +
		"plain\n"
	hs, errs, err := ParseHosts("hosts", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []HostLine{{Host: "localhost", User: "backuppc", Line: 3}, {Host: "laptop", DHCP: true, User: "craig", MoreUsers: []string{"jill", "jeff"}, Line: 5}, {Host: "plain", Line: 7}}
	if !reflect.DeepEqual(hs, want) {
		t.Fatalf("hosts %+v", hs)
	}
	if len(errs) != 1 || errs[0].Error() != `hosts:6: dhcp field "2": want 0 or 1: bad 2` {
		t.Fatalf("errors %v", errs)
	}
}

// FuzzParse: never panics, every error has a line inside the file, and
// every value parsed renders to Perl that parses back to the same value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"$Conf{A} = [1, 'x', {k => q(v)}];",
		"$Conf{B} = <<EOF;\nx\nEOF\n$Conf{C} = qw/a b/;",
		"$Conf{D} = \"\\t$x\"; $Conf{E} = 'a' . 'b';",
		"$Conf{F} = {hourBegin => 7.0, weekDays => [1..5]};",
		"# c\n1;\n$Conf{G}{x} = `id`;",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.pl", data)
		if err != nil {
			return
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, e := range file.Errors {
			if e.Line < 1 || e.Line > lines {
				t.Fatalf("error line %d outside 1..%d: %v", e.Line, lines, e)
			}
		}
		for _, st := range file.Settings {
			if st.Line < 1 || st.Line > lines {
				t.Fatalf("setting line %d outside 1..%d", st.Line, lines)
			}
			again, err := Parse("g.pl", []byte("$Conf{X} = "+st.Value.String()+";"))
			if err != nil || len(again.Errors) != 0 || len(again.Settings) != 1 {
				t.Fatalf("%s renders as %s, which does not parse back: %v %v", st.Name, st.Value.String(), err, again.Errors)
			}
			if a, b := again.Settings[0].Value.String(), st.Value.String(); a != b {
				t.Fatalf("round trip %s -> %s", b, a)
			}
		}
	})
}
