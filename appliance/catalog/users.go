package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Roles, from most to least privileged.
const (
	RoleAdmin    = "admin"    // everything
	RoleOperator = "operator" // run, restore, configure hosts; no user admin
	RoleUser     = "user"     // sees and restores the hosts of its groups
)

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool { return r == RoleAdmin || r == RoleOperator || r == RoleUser }

// A User can log in to the web UI and own API tokens.
type User struct {
	ID           int64
	Name         string
	PasswordHash string // bcrypt; never leaves the appliance
	Role         string
	Groups       []string
	Created      time.Time
}

// CreateUser inserts u and sets u.ID; a taken name is ErrExists, an
// unknown group ErrNotFound (nothing is stored then).
func (c *DB) CreateUser(ctx context.Context, u *User) error {
	if !ValidRole(u.Role) {
		return fmt.Errorf("user %s: unknown role %q (want admin, operator or user)", u.Name, u.Role)
	}
	if u.Created.IsZero() {
		u.Created = time.Now().UTC()
	}
	return c.tx(ctx, func(tx *sql.Tx) error {
		id, err := c.insertID(ctx, tx, "INSERT INTO users (name, password_hash, role, created) VALUES (?, ?, ?, ?)",
			u.Name, u.PasswordHash, u.Role, nanos(u.Created))
		if isUnique(err) {
			return fmt.Errorf("user %s: %w", u.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("create user %s: %w", u.Name, err)
		}
		u.ID = id
		return c.setUserGroups(ctx, tx, u)
	})
}

// UpdateUser writes u's password hash, role and groups.
func (c *DB) UpdateUser(ctx context.Context, u *User) error {
	if !ValidRole(u.Role) {
		return fmt.Errorf("user %s: unknown role %q", u.Name, u.Role)
	}
	return c.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, c.rebind("UPDATE users SET password_hash = ?, role = ? WHERE id = ?"), u.PasswordHash, u.Role, u.ID)
		if err != nil {
			return fmt.Errorf("update user %s: %w", u.Name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %s: %w", u.Name, ErrNotFound)
		}
		return c.setUserGroups(ctx, tx, u)
	})
}

func (c *DB) setUserGroups(ctx context.Context, tx *sql.Tx, u *User) error {
	if _, err := tx.ExecContext(ctx, c.rebind("DELETE FROM user_groups WHERE user_id = ?"), u.ID); err != nil {
		return err
	}
	for _, g := range u.Groups {
		gid, err := c.groupID(ctx, tx, g)
		if err != nil {
			return fmt.Errorf("user %s: %w", u.Name, err)
		}
		if _, err := tx.ExecContext(ctx, c.rebind("INSERT INTO user_groups (user_id, group_id) VALUES (?, ?)"), u.ID, gid); err != nil {
			return err
		}
	}
	return nil
}

// DeleteUser removes a user and its tokens.
func (c *DB) DeleteUser(ctx context.Context, name string) error {
	res, err := c.exec(ctx, "DELETE FROM users WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return nil
}

// User returns the named user, or ErrNotFound.
func (c *DB) User(ctx context.Context, name string) (*User, error) {
	us, err := c.users(ctx, "WHERE name = ?", name)
	if err != nil {
		return nil, err
	}
	if len(us) == 0 {
		return nil, fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return &us[0], nil
}

// UserByID returns a user by id, or ErrNotFound.
func (c *DB) UserByID(ctx context.Context, id int64) (*User, error) {
	us, err := c.users(ctx, "WHERE id = ?", id)
	if err != nil {
		return nil, err
	}
	if len(us) == 0 {
		return nil, fmt.Errorf("user #%d: %w", id, ErrNotFound)
	}
	return &us[0], nil
}

// Users lists every user by name.
func (c *DB) Users(ctx context.Context) ([]User, error) { return c.users(ctx, "") }

// AdminExists reports whether at least one admin user exists (setup done).
func (c *DB) AdminExists(ctx context.Context) (bool, error) {
	var n int64
	if err := c.queryRow(ctx, "SELECT COUNT(*) FROM users WHERE role = ?", RoleAdmin).Scan(&n); err != nil {
		return false, fmt.Errorf("count admins: %w", err)
	}
	return n > 0, nil
}

func (c *DB) users(ctx context.Context, where string, args ...any) ([]User, error) {
	rows, err := c.query(ctx, "SELECT id, name, password_hash, role, created FROM users "+where+" ORDER BY name", args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var created int64
		if err := rows.Scan(&u.ID, &u.Name, &u.PasswordHash, &u.Role, &created); err != nil {
			return nil, err
		}
		u.Created = fromNanos(created)
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for i := range out {
		out[i].Groups, err = c.names(ctx, `SELECT g.name FROM groups g JOIN user_groups ug ON ug.group_id = g.id
			WHERE ug.user_id = ? ORDER BY g.name`, out[i].ID)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// A Group ties users to hosts and carries template settings that its
// hosts inherit (schedule, retention…) unless they set their own.
type Group struct {
	ID       int64
	Name     string
	Settings map[string]string
}

// CreateGroup creates a group; a taken name is ErrExists.
func (c *DB) CreateGroup(ctx context.Context, name string) (*Group, error) {
	id, err := c.insertID(ctx, c.db, "INSERT INTO groups (name) VALUES (?)", name)
	if isUnique(err) {
		return nil, fmt.Errorf("group %s: %w", name, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create group %s: %w", name, err)
	}
	return &Group{ID: id, Name: name}, nil
}

// Groups lists groups by name.
func (c *DB) Groups(ctx context.Context) ([]Group, error) {
	rows, err := c.query(ctx, "SELECT id, name, settings FROM groups ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		var g Group
		var settings string
		if err := rows.Scan(&g.ID, &g.Name, &settings); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(settings), &g.Settings); err != nil {
			return nil, fmt.Errorf("group %s settings: %w", g.Name, err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// SetGroupSettings replaces a group's template settings.
func (c *DB) SetGroupSettings(ctx context.Context, name string, settings map[string]string) error {
	b, _ := json.Marshal(nonNilMap(settings))
	res, err := c.exec(ctx, "UPDATE groups SET settings = ? WHERE name = ?", string(b), name)
	if err != nil {
		return fmt.Errorf("group %s settings: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("group %s: %w", name, ErrNotFound)
	}
	return nil
}

// DeleteGroup removes a group (its memberships go with it).
func (c *DB) DeleteGroup(ctx context.Context, name string) error {
	res, err := c.exec(ctx, "DELETE FROM groups WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("delete group %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("group %s: %w", name, ErrNotFound)
	}
	return nil
}

func (c *DB) groupID(ctx context.Context, q querier, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, c.rebind("SELECT id FROM groups WHERE name = ?"), name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("group %s: %w", name, ErrNotFound)
	}
	return id, err
}

// UserSeesHost reports whether a user-role user shares a group with host.
func (c *DB) UserSeesHost(ctx context.Context, userID int64, host string) (bool, error) {
	var n int64
	err := c.queryRow(ctx, `SELECT COUNT(*) FROM user_groups ug
		JOIN host_groups hg ON hg.group_id = ug.group_id
		JOIN hosts h ON h.id = hg.host_id
		WHERE ug.user_id = ? AND h.name = ?`, userID, host).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("host visibility: %w", err)
	}
	return n > 0, nil
}

// A Token is an API credential of a user. Only its hash is stored.
type Token struct {
	ID       int64
	UserID   int64
	User     string
	Name     string
	Hash     string
	Created  time.Time
	LastUsed time.Time
	Expires  time.Time // refused from then on; zero = never
}

// ErrTokenExpired is TokenByHash's answer for a token past its expiry. It
// is an ErrNotFound, so callers that only check that treat an expired
// token exactly like an unknown one.
var ErrTokenExpired = fmt.Errorf("token expired: %w", ErrNotFound)

// Expired reports whether t is refused at now.
func (t *Token) Expired(now time.Time) bool {
	return !t.Expires.IsZero() && !now.Before(t.Expires)
}

// CreateToken stores a token hash for a user.
func (c *DB) CreateToken(ctx context.Context, t *Token) error {
	if t.Created.IsZero() {
		t.Created = time.Now().UTC()
	}
	id, err := c.insertID(ctx, c.db, "INSERT INTO tokens (user_id, name, hash, created, expires) VALUES (?, ?, ?, ?, ?)",
		t.UserID, t.Name, t.Hash, nanos(t.Created), nanos(t.Expires))
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.Name, err)
	}
	t.ID = id
	return nil
}

// TokenByHash finds a token by its hash and notes its use; ErrNotFound
// when no token has that hash, ErrTokenExpired (also an ErrNotFound) when
// it expired at or before now.
func (c *DB) TokenByHash(ctx context.Context, hash string, now time.Time) (*Token, error) {
	ts, err := c.tokens(ctx, "WHERE t.hash = ?", hash)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("token: %w", ErrNotFound)
	}
	if ts[0].Expired(now) {
		return nil, fmt.Errorf("token %d: %w", ts[0].ID, ErrTokenExpired)
	}
	c.exec(ctx, "UPDATE tokens SET last_used = ? WHERE id = ?", nanos(now), ts[0].ID) // best effort
	return &ts[0], nil
}

// Tokens lists the tokens of one user (userID > 0) or of everyone.
func (c *DB) Tokens(ctx context.Context, userID int64) ([]Token, error) {
	if userID > 0 {
		return c.tokens(ctx, "WHERE t.user_id = ?", userID)
	}
	return c.tokens(ctx, "")
}

// Token returns a token by id, or ErrNotFound.
func (c *DB) Token(ctx context.Context, id int64) (*Token, error) {
	ts, err := c.tokens(ctx, "WHERE t.id = ?", id)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("token %d: %w", id, ErrNotFound)
	}
	return &ts[0], nil
}

// DeleteToken revokes a token.
func (c *DB) DeleteToken(ctx context.Context, id int64) error {
	res, err := c.exec(ctx, "DELETE FROM tokens WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete token %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("token %d: %w", id, ErrNotFound)
	}
	return nil
}

func (c *DB) tokens(ctx context.Context, where string, args ...any) ([]Token, error) {
	rows, err := c.query(ctx, `SELECT t.id, t.user_id, u.name, t.name, t.hash, t.created, t.last_used, t.expires
		FROM tokens t JOIN users u ON u.id = t.user_id `+where+" ORDER BY t.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		var created, used, expires int64
		if err := rows.Scan(&t.ID, &t.UserID, &t.User, &t.Name, &t.Hash, &created, &used, &expires); err != nil {
			return nil, err
		}
		t.Created, t.LastUsed, t.Expires = fromNanos(created), fromNanos(used), fromNanos(expires)
		out = append(out, t)
	}
	return out, rows.Err()
}
