package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairn-backup/cairn/appliance/schedule"
)

// How the appliance wires the package: one queue, one scheduler feeding it,
// sources from the catalog, manual runs straight into the queue.
func Example() {
	clock := schedule.NewFakeClock(time.Date(2026, 11, 23, 1, 59, 0, 0, time.UTC))
	done := make(chan string, 10)
	errAuth := errors.New("auth failed") // stands in for pullers.ErrPermanent

	q := schedule.NewQueue(func(ctx context.Context, j *schedule.Job) error {
		// The real runner pulls j.Payload's source of j.Host into the pool.
		return nil
	}, schedule.QueueOptions{
		Limit:       2,
		Clock:       clock,
		IsPermanent: func(err error) bool { return errors.Is(err, errAuth) },
		OnStateChange: func(j schedule.Job) {
			// The real owner persists j in the catalog and publishes it on SSE.
			if j.State.Final() {
				done <- fmt.Sprintf("%s %s (%s)", j.Key, j.State, j.Host)
			}
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	defer q.Shutdown(context.Background())

	s := schedule.NewScheduler(q, schedule.SchedulerOptions{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	cron, err := schedule.ParseCron("0 2 * * *", time.UTC)
	if err != nil {
		panic(err)
	}
	office, err := schedule.ParseWindows([]string{"Mon-Fri 08:00-18:00"}, time.UTC)
	if err != nil {
		panic(err)
	}
	_ = s.Set(schedule.Source{
		Key: "web1/etc", Host: "web1", Cron: cron, Blackout: office,
		LastRun: time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC),
	})

	// `cairn backup run db1`: a manual job goes ahead of scheduled ones.
	_, _ = q.Enqueue(schedule.JobSpec{Key: "db1/pg", Host: "db1", Priority: schedule.PriorityManual})
	fmt.Println(<-done)

	// The appliance runs s.Run(ctx) in a goroutine; here we step by hand.
	clock.Advance(time.Minute)
	for _, j := range s.Tick(clock.Now()) {
		fmt.Println("enqueued", j.Key, "at", clock.Now().Format("15:04"))
	}
	fmt.Println(<-done)
	// Output:
	// db1/pg succeeded (db1)
	// enqueued web1/etc at 02:00
	// web1/etc succeeded (web1)
}

func ExampleParseCron() {
	c, err := schedule.ParseCron("30 2 * * mon-fri", time.UTC)
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Next(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))) // a Friday

	_, err = schedule.ParseCron("61 * * * *", time.UTC)
	fmt.Println(err)
	// Output:
	// 2026-11-23 02:30:00 +0000 UTC
	// cron "61 * * * *": minute 61 out of range 0-59
}
