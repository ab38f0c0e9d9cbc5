package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"strings"
	"sync"
	"time"
)

// Notifications: a failed backup, and a source whose last good backup is
// older than Config.StaleAfter, are POSTed as JSON to Config.WebhookURL
// (Slack-style "text" plus structured fields). Staleness is reported once
// per stale spell, checked every Config.StaleCheckEvery.

// Notification is the webhook body.
type Notification struct {
	Event       string    `json:"event"` // "backup_failed", "backup_stale"
	Text        string    `json:"text"`  // one line for people (chat webhooks show it)
	Host        string    `json:"host"`
	Source      string    `json:"source,omitempty"`
	JobID       int64     `json:"job_id,omitempty"`
	Error       string    `json:"error,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Time        time.Time `json:"time"`
	Appliance   string    `json:"appliance"` // pool ID, to tell appliances apart
}

type notifier struct {
	s      *Server
	client *http.Client
	mu     sync.Mutex
	stale  map[string]bool // host|source already reported stale
}

func newNotifier(s *Server) *notifier {
	return &notifier{s: s, client: &http.Client{Timeout: 15 * time.Second}, stale: map[string]bool{}}
}

// send delivers n by webhook and by mail, as configured; failures are
// logged, never fatal. The URL may hold a secret (chat webhooks do), so
// it is never logged.
func (nt *notifier) send(n Notification) {
	n.Time, n.Appliance = nt.s.now(), nt.s.pool.ID()
	if nt.s.cfg.SMTPAddr != "" && len(nt.s.cfg.MailTo) > 0 {
		go nt.mail(n)
	}
	url := nt.s.cfg.WebhookURL
	if url == "" {
		return
	}
	body, _ := json.Marshal(n)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
		if err != nil {
			nt.s.log.Warn("notification: bad webhook URL")
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := nt.client.Do(req)
		if err != nil {
			nt.s.log.Warn("notification not delivered", "event", n.Event, "host", n.Host, "err", "webhook unreachable")
			return
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			nt.s.log.Warn("notification refused", "event", n.Event, "host", n.Host, "status", resp.StatusCode)
		}
	}()
}

func (nt *notifier) backupFailed(jobID int64, host, msg string) {
	nt.send(Notification{Event: "backup_failed", Host: host, JobID: jobID, Error: msg,
		Text: fmt.Sprintf("cairn: backup of %s failed (job %d): %s", host, jobID, msg)})
}

// checkStale reports sources without a good backup for longer than
// cfg.StaleAfter, once each until they succeed again.
func (nt *notifier) checkStale(ctx context.Context) {
	sts, err := nt.s.cat.BackupStatuses(ctx)
	if err != nil {
		return
	}
	now := nt.s.now()
	for _, st := range sts {
		key := st.Host + "|" + st.Source
		ref := st.LastSuccess
		if ref.IsZero() {
			ref = st.Attempt
		}
		stale := now.Sub(ref) > nt.s.cfg.StaleAfter
		nt.mu.Lock()
		was := nt.stale[key]
		nt.stale[key] = stale
		nt.mu.Unlock()
		if stale && !was {
			nt.send(Notification{Event: "backup_stale", Host: st.Host, Source: st.Source, LastSuccess: st.LastSuccess,
				Text: fmt.Sprintf("cairn: no good backup of %s/%s for over %s", st.Host, st.Source, nt.s.cfg.StaleAfter)})
		}
	}
}

func (nt *notifier) loop(ctx context.Context) {
	if nt.s.cfg.WebhookURL == "" && nt.s.cfg.SMTPAddr == "" {
		return
	}
	t := nt.s.clock.NewTimer(0)
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		nt.checkStale(ctx)
		t = nt.s.clock.NewTimer(nt.s.cfg.StaleCheckEvery)
	}
}

// mail sends n as a plain-text email through cfg.SMTPAddr (STARTTLS when
// the server offers it; PLAIN auth only over TLS or to localhost, as
// net/smtp enforces).
func (nt *notifier) mail(n Notification) {
	cfg := nt.s.cfg
	from := cfg.MailFrom
	if from == "" {
		from = "cairn@localhost"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		from, strings.Join(cfg.MailTo, ", "), oneLine(n.Text), n.Time.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "%s\r\n\r\nevent: %s\r\nhost: %s\r\n", n.Text, n.Event, n.Host)
	if n.Source != "" {
		fmt.Fprintf(&b, "source: %s\r\n", n.Source)
	}
	if n.JobID != 0 {
		fmt.Fprintf(&b, "job: %d (cairn job show %d)\r\n", n.JobID, n.JobID)
	}
	if n.Error != "" {
		fmt.Fprintf(&b, "error: %s\r\n", oneLine(n.Error))
	}
	if !n.LastSuccess.IsZero() {
		fmt.Fprintf(&b, "last good backup: %s\r\n", n.LastSuccess.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "appliance pool: %s\r\n", n.Appliance)
	var auth smtp.Auth
	if cfg.SMTPUser != "" {
		host, _, _ := net.SplitHostPort(cfg.SMTPAddr)
		auth = smtp.PlainAuth("", cfg.SMTPUser, cfg.SMTPPassword, host)
	}
	if err := smtp.SendMail(cfg.SMTPAddr, auth, from, cfg.MailTo, []byte(b.String())); err != nil {
		nt.s.log.Warn("notification mail not sent", "event", n.Event, "host", n.Host, "err", err)
	}
}

// oneLine keeps header values and error lines on one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
