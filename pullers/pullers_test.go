package pullers_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/local"
)

type fakePuller struct{ id int }

func (f *fakePuller) Pull(ctx context.Context, j *pullers.Job) error { return nil }

// fakeCount numbers the fake pullers; registered once per test binary so
// that -count=N reruns don't register the method twice.
var fakeCount int

func init() {
	pullers.Register("test-fake", func() pullers.Puller { fakeCount++; return &fakePuller{id: fakeCount} })
}

func TestRegistry(t *testing.T) {

	methods := pullers.Methods()
	if !slices.Contains(methods, "test-fake") || !slices.Contains(methods, local.Method) {
		t.Fatalf("Methods() = %q, want test-fake and %s", methods, local.Method)
	}
	if !slices.IsSorted(methods) {
		t.Errorf("Methods() not sorted: %q", methods)
	}
	a, err := pullers.Get("test-fake")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pullers.Get("test-fake")
	if a.(*fakePuller).id == b.(*fakePuller).id {
		t.Error("Get returned the same instance twice; each call must make a new puller")
	}
	if p, err := pullers.Get(local.Method); err != nil {
		t.Fatal(err)
	} else if _, ok := p.(*local.Puller); !ok {
		t.Errorf("Get(%q) = %T", local.Method, p)
	}

	_, err = pullers.Get("gopher")
	if err == nil || !strings.Contains(err.Error(), `"gopher"`) || !strings.Contains(err.Error(), local.Method) {
		t.Errorf("Get(unknown) error = %v; want it to name the method and the known ones", err)
	}
}

func TestRegisterDuplicatePanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "duplicate") {
			t.Fatalf("duplicate Register: recover() = %v", r)
		}
	}()
	pullers.Register(local.Method, func() pullers.Puller { return &fakePuller{} })
}
