package appliance

import (
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
)

// validateCron checks a schedule expression with the scheduler's parser.
func validateCron(expr string) error {
	_, err := schedule.ParseCron(expr, time.Local)
	return err
}

// validateBlackout checks blackout window expressions.
func validateBlackout(exprs []string) error {
	_, err := schedule.ParseWindows(exprs, time.Local)
	return err
}
