package appliance

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
)

// fakeSMTP accepts mail on 127.0.0.1 and hands each message's text to
// the returned channel. It speaks just enough SMTP for net/smtp.
func fakeSMTP(t *testing.T) (string, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	msgs := make(chan string, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				say := func(s string) { c.Write([]byte(s + "\r\n")) }
				say("220 fake ESMTP")
				var data strings.Builder
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd := strings.ToUpper(strings.TrimSpace(line))
					switch {
					case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
						say("250-fake")
						say("250 8BITMIME")
					case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"):
						data.WriteString(strings.TrimSpace(line) + "\n")
						say("250 ok")
					case cmd == "DATA":
						say("354 go on")
						for {
							l, err := r.ReadString('\n')
							if err != nil {
								return
							}
							if l == ".\r\n" {
								break
							}
							data.WriteString(l)
						}
						msgs <- data.String()
						say("250 queued")
					case cmd == "QUIT":
						say("221 bye")
						return
					default:
						say("250 ok")
					}
				}
			}()
		}
	}()
	return l.Addr().String(), msgs
}

// TestMailNotification: a failed backup is mailed, credentials scrubbed.
func TestMailNotification(t *testing.T) {
	resetFake(t)
	releaseFake()
	addr, msgs := fakeSMTP(t)
	e := newEnv(t, Config{SMTPAddr: addr, MailFrom: "cairn@appliance.example", MailTo: []string{"ops@example.net"}})
	name := "bad"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "data", Method: fakeMethod,
		Path: "/x", Options: map[string]string{"fail": "login refused for"}, Secret: map[string]string{"password": "hunter2-secret"}}}}, nil)
	j := e.waitJob(e.backup("bad").ID)
	m := <-msgs
	for _, want := range []string{"MAIL FROM:<cairn@appliance.example>", "RCPT TO:<ops@example.net>",
		"Subject: cairn: backup of bad failed", "error: source data: login refused for ***", "host: bad",
		"cairn job show " + itoa(j.ID)} {
		if !strings.Contains(m, want) {
			t.Errorf("mail lacks %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "hunter2") {
		t.Fatalf("mail contains the password:\n%s", m)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
