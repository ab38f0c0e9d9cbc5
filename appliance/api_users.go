package appliance

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"golang.org/x/crypto/bcrypt"
)

// UserBody is a user as the API shows it (never the password hash).
type UserBody struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Groups  []string  `json:"groups"`
	Created time.Time `json:"created"`
}

// UserInput creates a user.
type UserInput struct {
	Name     string   `json:"name"`
	Password string   `json:"password"`
	Role     string   `json:"role"`
	Groups   []string `json:"groups,omitempty"`
}

func userBody(u *catalog.User) UserBody {
	g := u.Groups
	if g == nil {
		g = []string{}
	}
	return UserBody{Name: u.Name, Role: u.Role, Groups: g, Created: u.Created}
}

const minPasswordLen = 8

func (s *Server) handleUserList(r *http.Request, p *principal) (any, error) {
	us, err := s.cat.Users(r.Context())
	if err != nil {
		return nil, err
	}
	out := []UserBody{}
	for i := range us {
		out = append(out, userBody(&us[i]))
	}
	return out, nil
}

func (s *Server) handleUserCreate(r *http.Request, p *principal) (any, error) {
	var in UserInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkName("user", in.Name); err != nil {
		return nil, err
	}
	if in.Role == "" {
		in.Role = catalog.RoleUser
	}
	if !catalog.ValidRole(in.Role) {
		return nil, badRequest("role %q: want admin, operator or user", in.Role)
	}
	if len(in.Password) < minPasswordLen {
		return nil, badRequest("password: at least %d characters", minPasswordLen)
	}
	if len(in.Password) > 72 {
		return nil, badRequest("password: at most 72 bytes (bcrypt)")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(in.Password), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	u := &catalog.User{Name: in.Name, PasswordHash: string(hash), Role: in.Role, Groups: in.Groups, Created: s.now()}
	if err := s.cat.CreateUser(r.Context(), u); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, badRequest("%v", err) // unknown group
		}
		return nil, err
	}
	s.log.Info("user added", "user", u.Name, "role", u.Role, "by", p.Name)
	return created{userBody(u)}, nil
}

func (s *Server) handleUserDelete(r *http.Request, p *principal) (any, error) {
	name := r.PathValue("name")
	if err := s.cat.DeleteUser(r.Context(), name); err != nil {
		return nil, err
	}
	s.log.Info("user removed", "user", name, "by", p.Name)
	return nil, nil
}

// GroupBody is a group with its template settings.
type GroupBody struct {
	Name     string            `json:"name"`
	Settings map[string]string `json:"settings,omitempty"`
}

func (s *Server) handleGroupList(r *http.Request, p *principal) (any, error) {
	gs, err := s.cat.Groups(r.Context())
	if err != nil {
		return nil, err
	}
	out := []GroupBody{}
	for _, g := range gs {
		out = append(out, GroupBody{Name: g.Name, Settings: g.Settings})
	}
	return out, nil
}

func (s *Server) handleGroupCreate(r *http.Request, p *principal) (any, error) {
	var in GroupBody
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkName("group", in.Name); err != nil {
		return nil, err
	}
	if err := validateTemplate(in.Settings); err != nil {
		return nil, err
	}
	g, err := s.cat.CreateGroup(r.Context(), in.Name)
	if err != nil {
		return nil, err
	}
	if len(in.Settings) > 0 {
		if err := s.cat.SetGroupSettings(r.Context(), g.Name, in.Settings); err != nil {
			return nil, err
		}
	}
	return created{GroupBody{Name: g.Name, Settings: in.Settings}}, nil
}

func (s *Server) handleGroupDelete(r *http.Request, p *principal) (any, error) {
	return nil, s.cat.DeleteGroup(r.Context(), r.PathValue("name"))
}

// TokenBody is a token as listed (never the token itself).
type TokenBody struct {
	ID       int64      `json:"id"`
	User     string     `json:"user"`
	Name     string     `json:"name"`
	Created  time.Time  `json:"created"`
	LastUsed *time.Time `json:"last_used,omitempty"`
	Expires  *time.Time `json:"expires,omitempty"` // absent: never
}

// TokenInput creates a token. User defaults to the caller; only an admin
// may name another user. At most one of ExpiresIn (a duration from now:
// "720h", "30d") and Expires (RFC 3339) may be set; neither means the
// token never expires.
type TokenInput struct {
	Name      string `json:"name"`
	User      string `json:"user,omitempty"`
	ExpiresIn string `json:"expires_in,omitempty"`
	Expires   string `json:"expires,omitempty"`
}

// NewTokenBody is the answer to a token creation: the only time the token
// is shown.
type NewTokenBody struct {
	TokenBody
	Token string `json:"token"`
}

func tokenBody(t *catalog.Token) TokenBody {
	return TokenBody{ID: t.ID, User: t.User, Name: t.Name, Created: t.Created, LastUsed: optTime(t.LastUsed), Expires: optTime(t.Expires)}
}

// ParseTokenLifetime reads a token lifetime: a Go duration ("720h",
// "90m") or a number of days ("30d"). It must be positive.
func ParseTokenLifetime(v string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(v, "d"); ok {
		var days int64
		days, err = strconv.ParseInt(n, 10, 64)
		if err == nil && (days <= 0 || days > 100*366) {
			return 0, fmt.Errorf("%q: want between 1d and 36600d", v)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is no duration (say e.g. 720h or 30d)", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration", v)
	}
	return d, nil
}

// tokenExpiry turns a TokenInput's expires_in or expires into a time
// (zero: never).
func tokenExpiry(in *TokenInput, now time.Time) (time.Time, error) {
	switch {
	case in.ExpiresIn != "" && in.Expires != "":
		return time.Time{}, badRequest("give expires_in or expires, not both")
	case in.ExpiresIn != "":
		d, err := ParseTokenLifetime(in.ExpiresIn)
		if err != nil {
			return time.Time{}, badRequest("expires_in %v", err)
		}
		return now.Add(d).UTC(), nil
	case in.Expires != "":
		t, err := time.Parse(time.RFC3339, in.Expires)
		if err != nil {
			return time.Time{}, badRequest("expires %q: want an RFC 3339 time like 2027-01-31T00:00:00Z", in.Expires)
		}
		if !t.After(now) {
			return time.Time{}, badRequest("expires %s: that is not in the future", in.Expires)
		}
		return t.UTC(), nil
	}
	return time.Time{}, nil
}

func (s *Server) handleTokenList(r *http.Request, p *principal) (any, error) {
	uid := p.UserID
	if p.rank() >= roleAdmin {
		uid = 0 // admins see every token
	} else if uid == 0 {
		return []TokenBody{}, nil
	}
	ts, err := s.cat.Tokens(r.Context(), uid)
	if err != nil {
		return nil, err
	}
	out := []TokenBody{}
	for i := range ts {
		out = append(out, tokenBody(&ts[i]))
	}
	return out, nil
}

func (s *Server) handleTokenCreate(r *http.Request, p *principal) (any, error) {
	var in TokenInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Name == "" {
		return nil, badRequest("token name is required")
	}
	now := s.now()
	expires, err := tokenExpiry(&in, now)
	if err != nil {
		return nil, err
	}
	var u *catalog.User
	switch {
	case in.User != "" && in.User != p.Name:
		if p.rank() < roleAdmin {
			return nil, forbidden("only an admin may create tokens for another user")
		}
		u, err = s.cat.User(r.Context(), in.User)
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, badRequest("user %s does not exist", in.User)
		}
	case p.UserID == 0:
		return nil, badRequest("root on the socket is no user: say which user the token is for (user)")
	default:
		u, err = s.cat.UserByID(r.Context(), p.UserID)
	}
	if err != nil {
		return nil, err
	}
	tok := newToken()
	t := &catalog.Token{UserID: u.ID, User: u.Name, Name: in.Name, Hash: hashToken(tok), Created: now, Expires: expires}
	if err := s.cat.CreateToken(r.Context(), t); err != nil {
		return nil, err
	}
	exp := "never"
	if !expires.IsZero() {
		exp = expires.Format(time.RFC3339)
	}
	s.log.Info("token created", "token_id", t.ID, "user", u.Name, "by", p.Name, "expires", exp)
	return created{NewTokenBody{TokenBody: tokenBody(t), Token: tok}}, nil
}

func (s *Server) handleTokenDelete(r *http.Request, p *principal) (any, error) {
	id, err := pathInt(r, "id")
	if err != nil {
		return nil, err
	}
	t, err := s.cat.Token(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if p.rank() < roleAdmin && t.UserID != p.UserID {
		return nil, notFound("token %d: not found", id)
	}
	return nil, s.cat.DeleteToken(r.Context(), id)
}
