package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Well-known settings keys.
const (
	SettingPoolID       = "pool.id"       // UUID of the pool this catalog indexes
	SettingPoolLocation = "pool.location" // where that pool lives
)

// Setting returns the value of key; ok is false when it is unset.
func (c *DB) Setting(ctx context.Context, key string) (val string, ok bool, err error) {
	err = c.queryRow(ctx, "SELECT value FROM settings WHERE key = ?", key).Scan(&val)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("setting %s: %w", key, err)
	}
	return val, true, nil
}

// SetSetting sets key to val.
func (c *DB) SetSetting(ctx context.Context, key, val string) error {
	_, err := c.exec(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, val)
	if err != nil {
		return fmt.Errorf("set setting %s: %w", key, err)
	}
	return nil
}
