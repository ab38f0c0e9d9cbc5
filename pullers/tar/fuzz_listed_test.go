package tar

import "testing"

// FuzzParseListed: a line of the host's find listing (untrusted: the host
// writes it) never panics the parser, and what parses has a name and a
// sane size.
func FuzzParseListed(f *testing.F) {
	for _, s := range []string{
		"f 12 1700000000.123456789 644 0 0 etc/passwd",
		"d 4096 1700000000.0 755 0 0 etc",
		"l 7 1700000000 777 0 0 link",
		"f -1 1 644 0 0 x",
		"f 1 1.9999999999999 644 0 0 a b c",
		"x  0 0 0 0 ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := parseListed(s)
		if err != nil {
			return
		}
		if l.rel == "" || l.size < 0 {
			t.Fatalf("%q parsed to %+v", s, l)
		}
	})
}
