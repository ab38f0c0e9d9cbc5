package web

// A minimal Chrome DevTools Protocol client for the real-browser tests:
// start headless Chromium, drive one page (navigate, evaluate JavaScript,
// screenshot) and collect console errors and uncaught exceptions.

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"golang.org/x/net/websocket"
)

type browser struct {
	t      *testing.T
	ws     *websocket.Conn
	mu     sync.Mutex
	nextID int64
	wait   map[int64]chan cdpMsg
	errs   []string // console errors and exceptions
	shots  string   // screenshot directory
}

type cdpMsg struct {
	ID     int64           `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startBrowser starts headless Chromium and attaches to its first page.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	testenv.Need(t, "chromium")
	profile, err := os.MkdirTemp("", "cairn-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--remote-allow-origins=*", "--remote-debugging-port=0", "--window-size=1280,900",
		"--user-data-dir="+profile, "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		// Chromium's helpers (zygote, renderers) share its process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		os.RemoveAll(profile)
	})
	wsURL := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), "DevTools listening on "); ok {
				wsURL <- strings.TrimSpace(u)
			}
		}
	}()
	var browserWS string
	select {
	case browserWS = <-wsURL:
	case <-time.After(60 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 60s")
	}
	// The page target of about:blank.
	hostPort := strings.TrimPrefix(browserWS, "ws://")
	hostPort = hostPort[:strings.Index(hostPort, "/")]
	var pageWS string
	deadline := time.Now().Add(30 * time.Second)
	for pageWS == "" {
		res, err := http.Get("http://" + hostPort + "/json/list")
		if err == nil {
			var targets []struct{ Type, WebSocketDebuggerURL string }
			json.NewDecoder(res.Body).Decode(&targets)
			res.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" {
					pageWS = tg.WebSocketDebuggerURL
				}
			}
		}
		if pageWS == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no page target in chromium: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ws, err := websocket.Dial(pageWS, "", "http://"+hostPort)
	if err != nil {
		t.Fatalf("devtools websocket %s: %v", pageWS, err)
	}
	ws.MaxPayloadBytes = 64 << 20
	t.Cleanup(func() { ws.Close() })
	b := &browser{t: t, ws: ws, wait: map[int64]chan cdpMsg{}}
	b.shots = os.Getenv("CAIRN_TEST_ARTIFACTS")
	if b.shots == "" {
		b.shots = filepath.Join(os.TempDir(), "cairn-web-screenshots")
	}
	os.MkdirAll(b.shots, 0o755)
	go b.read()
	b.call("Runtime.enable", nil, nil)
	b.call("Page.enable", nil, nil)
	b.call("Log.enable", nil, nil)
	return b
}

func (b *browser) read() {
	for {
		var m cdpMsg
		if err := websocket.JSON.Receive(b.ws, &m); err != nil {
			b.mu.Lock()
			for id, ch := range b.wait {
				close(ch)
				delete(b.wait, id)
			}
			b.mu.Unlock()
			return
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.wait[m.ID]
			delete(b.wait, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		switch m.Method {
		case "Runtime.exceptionThrown":
			b.addErr("exception: " + string(m.Params))
		case "Runtime.consoleAPICalled":
			var p struct {
				Type string `json:"type"`
				Args []struct {
					Value       any    `json:"value"`
					Description string `json:"description"`
				} `json:"args"`
			}
			json.Unmarshal(m.Params, &p)
			if p.Type == "error" || p.Type == "assert" {
				b.addErr(fmt.Sprintf("console.%s: %v", p.Type, p.Args))
			}
		case "Log.entryAdded":
			var p struct {
				Entry struct{ Level, Text, URL string } `json:"entry"`
			}
			json.Unmarshal(m.Params, &p)
			if p.Entry.Level == "error" {
				b.addErr("log: " + p.Entry.Text + " " + p.Entry.URL)
			}
		}
	}
}

func (b *browser) addErr(s string) {
	b.mu.Lock()
	b.errs = append(b.errs, s)
	b.mu.Unlock()
}

// consoleErrors returns and clears the errors seen so far.
func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errs
	b.errs = nil
	return e
}

// call sends one command and decodes its result into out (may be nil).
func (b *browser) call(method string, params any, out any) {
	b.t.Helper()
	if err := b.callErr(method, params, out); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) callErr(method string, params any, out any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMsg, 1)
	b.wait[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if err := websocket.JSON.Send(b.ws, msg); err != nil {
		return fmt.Errorf("cdp %s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("cdp %s: connection closed", method)
		}
		if m.Error != nil {
			return fmt.Errorf("cdp %s: %s", method, m.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(m.Result, out); err != nil {
				return fmt.Errorf("cdp %s: decode: %w", method, err)
			}
		}
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("cdp %s: no answer in 60s", method)
	}
}

// eval evaluates expr in the page (awaiting a promise) and returns its
// JSON value.
func (b *browser) eval(expr string) json.RawMessage {
	b.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res)
	if res.ExceptionDetails != nil {
		b.t.Fatalf("eval %q: %s %s", expr, res.ExceptionDetails.Text, res.ExceptionDetails.Exception.Description)
	}
	return res.Result.Value
}

func (b *browser) evalString(expr string) string {
	b.t.Helper()
	var s string
	json.Unmarshal(b.eval(expr), &s)
	return s
}

// waitFor polls the boolean expression cond until true.
func (b *browser) waitFor(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var res struct {
			Result struct {
				Value bool `json:"value"`
			} `json:"result"`
		}
		// Errors here are navigations in flight (context destroyed): poll on.
		err := b.callErr("Runtime.evaluate", map[string]any{"returnByValue": true,
			"expression": "(function(){try{return !!(" + cond + ")}catch(e){return false}})()"}, &res)
		if err == nil && res.Result.Value {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waiting for %s (%s): timed out; page %s:\n%s", what, cond, b.evalString("location.href"),
				b.evalString("document.body ? document.body.innerText : ''"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// navigate opens url and waits until the document at path has loaded.
func (b *browser) navigate(url string) {
	b.t.Helper()
	b.call("Page.navigate", map[string]any{"url": url}, nil)
	b.waitLoaded()
}

// waitLoaded waits for a complete document that is not about:blank.
func (b *browser) waitLoaded() {
	b.t.Helper()
	b.waitFor("page load", `document.readyState === "complete" && location.href !== "about:blank"`)
}

// submit clicks the submit button of the form sel and waits for the
// next page to load.
func (b *browser) submit(sel string) {
	b.t.Helper()
	// The page that has sel may still be loading (a wait on its path alone
	// does not cover the parse): wait for the form first.
	b.waitFor("form "+sel, `document.readyState === "complete" && document.querySelector(`+jsString(sel)+`) !== null`)
	b.eval(`window.__cairnOld = true; document.querySelector(` + jsString(sel) + `).requestSubmit()`)
	b.waitFor("navigation after submitting "+sel, `!window.__cairnOld && document.readyState === "complete"`)
}

// setValue sets the value of the input sel.
func (b *browser) setValue(sel, v string) {
	b.t.Helper()
	b.eval(`(function(){const e=document.querySelector(` + jsString(sel) + `); e.value=` + jsString(v) + `; e.dispatchEvent(new Event("change"))})()`)
}

func (b *browser) path() string {
	return b.evalString("location.pathname")
}

// screenshot saves a PNG of the page under the artifacts directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	var res struct {
		Data string `json:"data"`
	}
	b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &res)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		b.t.Fatalf("screenshot %s: not a PNG (%v)", name, err)
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d bytes)", p, len(png))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
