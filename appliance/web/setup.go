package web

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"golang.org/x/crypto/bcrypt"
)

// MinPasswordLen is the shortest password CheckPassword accepts.
const MinPasswordLen = 12

// validName matches the appliance's rule for user names.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckPassword applies the password policy: at least MinPasswordLen
// characters, at most 72 bytes (bcrypt's limit), not all of one class
// (lower case, upper case, digits, other), and not containing the user
// name.
func CheckPassword(user, pw string) error {
	if utf8.RuneCountInString(pw) < MinPasswordLen {
		return fmt.Errorf("use at least %d characters", MinPasswordLen)
	}
	if len(pw) > 72 {
		return errors.New("use at most 72 bytes")
	}
	var lower, upper, digit, other bool
	for _, c := range pw {
		switch {
		case unicode.IsLower(c):
			lower = true
		case unicode.IsUpper(c):
			upper = true
		case unicode.IsDigit(c):
			digit = true
		default:
			other = true
		}
	}
	n := 0
	for _, b := range []bool{lower, upper, digit, other} {
		if b {
			n++
		}
	}
	if n < 2 {
		return errors.New("mix at least two kinds of characters (lower case, upper case, digits, symbols)")
	}
	if user != "" && strings.Contains(strings.ToLower(pw), strings.ToLower(user)) {
		return errors.New("must not contain the user name")
	}
	return nil
}

func (u *UI) setupForm(w http.ResponseWriter, r *http.Request, code int, d *pageData) {
	d.Title = "Welcome to Cairn"
	d.Form["form_token"] = issueFormToken(w, r)
	d.Data["minlen"] = MinPasswordLen
	u.render(w, code, "setup.html", d)
}

func (u *UI) handleSetup(w http.ResponseWriter, r *http.Request) {
	need, err := u.NeedsSetup(r.Context())
	if err != nil {
		http.Error(w, "catalog unavailable", http.StatusServiceUnavailable)
		return
	}
	if !need {
		if usr := u.current(r); usr != nil && usr.Role == catalog.RoleAdmin {
			http.Redirect(w, r, "/setup/storage", http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	d := u.baseData(r, nil, "")
	d.Form["token"] = r.URL.Query().Get("token")
	d.Form["username"] = "admin"
	u.setupForm(w, r, http.StatusOK, d)
}

// handleSetupPost creates the first admin. It needs the setup token and
// a password that passes the policy; the check and the creation are
// serialised so two racing posts cannot both create an admin.
func (u *UI) handleSetupPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	name := strings.TrimSpace(r.PostFormValue("username"))
	pw, pw2 := r.PostFormValue("password"), r.PostFormValue("password2")
	d := u.baseData(r, nil, "")
	d.Form["username"] = name
	d.Form["token"] = r.PostFormValue("token")
	if !checkFormToken(r) {
		d.Errors["form"] = "This form expired or came from another site. Please try again (cookies must be enabled)."
		u.setupForm(w, r, http.StatusForbidden, d)
		return
	}
	u.setupMu.Lock()
	defer u.setupMu.Unlock()
	need, err := u.NeedsSetup(r.Context())
	if err != nil {
		http.Error(w, "catalog unavailable", http.StatusServiceUnavailable)
		return
	}
	if !need {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("token")), []byte(u.token)) != 1 {
		d.Form["token"] = ""
		d.Errors["token"] = "Wrong setup token. Copy it from the log of cairn serve (the line \"setup token\")."
		u.log.Warn("web: setup refused: wrong setup token", "remote", r.RemoteAddr)
		u.setupForm(w, r, http.StatusForbidden, d)
		return
	}
	if !validName.MatchString(name) {
		d.Errors["username"] = "Use letters, digits, '.', '_' and '-', starting with a letter or digit."
	}
	if err := CheckPassword(name, pw); err != nil {
		d.Errors["password"] = "Password: " + err.Error() + "."
	} else if pw != pw2 {
		d.Errors["password2"] = "The two passwords differ."
	}
	if len(d.Errors) > 0 {
		u.setupForm(w, r, http.StatusBadRequest, d)
		return
	}
	cost := u.cfg.BcryptCost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		http.Error(w, "hash password", http.StatusInternalServerError)
		return
	}
	usr := &catalog.User{Name: name, PasswordHash: string(hash), Role: catalog.RoleAdmin, Created: u.now()}
	if err := u.cfg.Store.CreateUser(r.Context(), usr); err != nil {
		u.log.Error("web: setup: create admin", "err", err)
		d.Errors["form"] = "Could not create the admin: " + err.Error()
		u.setupForm(w, r, http.StatusInternalServerError, d)
		return
	}
	u.token = randomToken()[:32] // one-time: the printed token is now spent
	u.log.Info("web: setup: admin created", "user", name, "remote", r.RemoteAddr)
	u.Sessions.Create(w, r, usr.ID)
	http.Redirect(w, r, "/setup/storage", http.StatusSeeOther)
}

// commonZones are offered in the timezone picker; any IANA name is
// accepted.
var commonZones = []string{"UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Rome",
	"Europe/Amsterdam", "Europe/Zurich", "Europe/Warsaw", "Europe/Helsinki", "America/New_York", "America/Chicago",
	"America/Denver", "America/Los_Angeles", "America/Sao_Paulo", "Asia/Tokyo", "Asia/Shanghai", "Asia/Kolkata",
	"Asia/Singapore", "Australia/Sydney", "Pacific/Auckland", "Africa/Johannesburg"}

func (u *UI) timezoneData(r *http.Request, d *pageData) int {
	d.Data["zones"] = commonZones
	if d.TZ == "" {
		d.Form["timezone"] = "UTC"
	} else {
		d.Form["timezone"] = d.TZ
	}
	return 0
}

// adminPost gates a form post of the logged-in admin (session + CSRF).
func (u *UI) adminPost(w http.ResponseWriter, r *http.Request) *catalog.User {
	usr := u.gate(w, r)
	if usr == nil {
		return nil
	}
	if err := u.Sessions.CheckCSRF(r); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return nil
	}
	if usr.Role != catalog.RoleAdmin {
		http.Error(w, "only an admin may change the setup", http.StatusForbidden)
		return nil
	}
	return usr
}

func (u *UI) handleTimezonePost(w http.ResponseWriter, r *http.Request) {
	usr := u.adminPost(w, r)
	if usr == nil {
		return
	}
	tz := strings.TrimSpace(r.PostFormValue("timezone"))
	if _, err := time.LoadLocation(tz); err != nil || tz == "" || tz == "Local" {
		d := u.baseData(r, usr, titles["setup_timezone.html"])
		u.timezoneData(r, d)
		d.Form["timezone"] = tz
		d.Errors["timezone"] = fmt.Sprintf("Unknown timezone %q: use an IANA name such as Europe/Berlin.", tz)
		u.render(w, http.StatusBadRequest, "setup_timezone.html", d)
		return
	}
	if err := u.cfg.Store.SetSetting(r.Context(), SettingTimezone, tz); err != nil {
		http.Error(w, "save timezone: "+err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/setup/tls", http.StatusSeeOther)
}

func (u *UI) handleSetupDone(w http.ResponseWriter, r *http.Request) {
	if u.adminPost(w, r) == nil {
		return
	}
	if err := u.cfg.Store.SetSetting(r.Context(), SettingSetupDone, "1"); err != nil {
		http.Error(w, "save setting: "+err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
