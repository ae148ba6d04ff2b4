// Command etcdcheck drives etcd's official Go client (clientv3 and its concurrency recipes:
// STM, Mutex, Election) against a cluster and checks what each recipe promises. It is the
// check behind bench/tests/go_client.rs, and it passes against etcd itself, which shows the
// checks are fair.
//
// Built in GOPATH mode against Debian's golang-etcd-server-dev (etcd 3.4's client sources):
//
//	GO111MODULE=off GOPATH=$PWD/bench/go:/usr/share/gocode go build -o etcdcheck etcdcheck
//
// Usage:
//
//	etcdcheck -endpoints 127.0.0.1:2379,... -workload stm|mutex|election [-clients N] [-ops N]
//
// It prints one line of JSON (what completed, what had an unknown outcome, the violations
// found) and exits 1 when a check failed, 2 when the run could not be carried out.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

// report is what a run prints.
type report struct {
	Workload   string   `json:"workload"`
	Isolation  string   `json:"isolation,omitempty"`
	Ok         int      `json:"ok"`
	Unknown    int      `json:"unknown"`
	Failed     int      `json:"failed"`
	Violations []string `json:"violations"`
	Errors     []string `json:"errors"`
	Millis     int64    `json:"millis"`
}

// tally collects outcomes from concurrent clients.
type tally struct {
	mu sync.Mutex
	r  report
}

func (t *tally) ok()               { t.mu.Lock(); t.r.Ok++; t.mu.Unlock() }
func (t *tally) unknown(err error) { t.mu.Lock(); t.r.Unknown++; t.note(err); t.mu.Unlock() }
func (t *tally) failed(err error)  { t.mu.Lock(); t.r.Failed++; t.note(err); t.mu.Unlock() }
func (t *tally) violation(s string) {
	t.mu.Lock()
	t.r.Violations = append(t.r.Violations, s)
	t.mu.Unlock()
}

// note keeps the first few distinct error texts (caller holds mu).
func (t *tally) note(err error) {
	s := err.Error()
	for _, e := range t.r.Errors {
		if e == s {
			return
		}
	}
	if len(t.r.Errors) < 8 {
		t.r.Errors = append(t.r.Errors, s)
	}
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	workload := flag.String("workload", "stm", "stm, mutex or election")
	isolation := flag.String("isolation", "serializable-snapshot",
		"STM isolation: serializable-snapshot, serializable or repeatable-reads")
	clients := flag.Int("clients", 4, "concurrent clients, each with its own connection")
	ops := flag.Int("ops", 30, "operations per client")
	prefix := flag.String("prefix", fmt.Sprintf("/etcdcheck/%d", time.Now().UnixNano()),
		"key prefix of this run")
	timeout := flag.Duration("timeout", 120*time.Second, "the whole run's limit")
	flag.Parse()

	eps := strings.Split(*endpoints, ",")
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	started := time.Now()
	t := &tally{r: report{Workload: *workload, Violations: []string{}, Errors: []string{}}}
	var err error
	switch *workload {
	case "stm":
		t.r.Isolation = *isolation
		err = stmBank(ctx, t, eps, *isolation, *clients, *ops, *prefix)
	case "mutex":
		err = mutexCounter(ctx, t, eps, *clients, *ops, *prefix)
	case "election":
		err = election(ctx, t, eps, *clients, *ops, *prefix)
	default:
		err = fmt.Errorf("unknown workload %q", *workload)
	}
	t.r.Millis = time.Since(started).Milliseconds()
	out, _ := json.Marshal(t.r)
	fmt.Println(string(out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdcheck:", err)
		os.Exit(2)
	}
	if len(t.r.Violations) > 0 {
		os.Exit(1)
	}
}

// connect opens a client on every endpoint, in a rotated order so that clients spread over
// the members as applications do.
func connect(eps []string, i int) (*clientv3.Client, error) {
	rot := append(append([]string{}, eps[i%len(eps):]...), eps[:i%len(eps)]...)
	return clientv3.New(clientv3.Config{
		Endpoints:   rot,
		DialTimeout: 5 * time.Second,
	})
}

// retry runs op until it succeeds, ctx ends or 30 s pass; for set-up and final reads.
func retry(ctx context.Context, op func(context.Context) error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op(octx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stmBank: accounts that start at 100 each; every STM transaction reads all of them, checks
// that they sum to the total, moves a random amount between two of them and counts itself
// in a counter key. At the end the accounts still sum to the total, and the counter lies
// between the committed transactions and the committed plus the unknown ones (no update
// lost, none applied twice).
func stmBank(ctx context.Context, t *tally, eps []string, iso string, clients, ops int, pfx string) error {
	levels := map[string]concurrency.Isolation{
		"serializable-snapshot": concurrency.SerializableSnapshot,
		"serializable":          concurrency.Serializable,
		"repeatable-reads":      concurrency.RepeatableReads,
	}
	level, known := levels[iso]
	if !known {
		return fmt.Errorf("unknown isolation %q", iso)
	}
	const accounts, start = 5, 100
	keys := make([]string, accounts)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s/acct/%d", pfx, i)
	}
	counter := pfx + "/count"
	setup, err := connect(eps, 0)
	if err != nil {
		return err
	}
	defer setup.Close()
	ops0 := []clientv3.Op{clientv3.OpPut(counter, "0")}
	for _, k := range keys {
		ops0 = append(ops0, clientv3.OpPut(k, fmt.Sprint(start)))
	}
	if err := retry(ctx, func(c context.Context) error {
		_, err := setup.Txn(c).Then(ops0...).Commit()
		return err
	}); err != nil {
		return fmt.Errorf("set-up: %w", err)
	}

	var wg sync.WaitGroup
	var committed, unknown sync.Map
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cli, err := connect(eps, c)
			if err != nil {
				t.failed(err)
				return
			}
			defer cli.Close()
			rng := rand.New(rand.NewSource(int64(c)))
			for i := 0; i < ops && ctx.Err() == nil; i++ {
				var sum int
				from, to := rng.Intn(accounts), rng.Intn(accounts)
				amount := rng.Intn(20)
				octx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := concurrency.NewSTM(cli, func(s concurrency.STM) error {
					sum = 0
					vals := make([]int, accounts)
					for j, k := range keys {
						fmt.Sscan(s.Get(k), &vals[j])
						sum += vals[j]
					}
					if from != to && vals[from] >= amount {
						s.Put(keys[from], fmt.Sprint(vals[from]-amount))
						s.Put(keys[to], fmt.Sprint(vals[to]+amount))
					}
					var n int
					fmt.Sscan(s.Get(counter), &n)
					s.Put(counter, fmt.Sprint(n+1))
					return nil
				}, concurrency.WithIsolation(level), concurrency.WithAbortContext(octx))
				cancel()
				id := fmt.Sprintf("%d/%d", c, i)
				if err != nil {
					// The commit may or may not have been applied.
					unknown.Store(id, true)
					t.unknown(err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				committed.Store(id, true)
				t.ok()
				if sum != accounts*start {
					t.violation(fmt.Sprintf("txn %s committed after reading accounts summing to %d, not %d",
						id, sum, accounts*start))
				}
			}
		}(c)
	}
	wg.Wait()

	var final *clientv3.GetResponse
	if err := retry(ctx, func(c context.Context) error {
		var err error
		final, err = setup.Get(c, pfx+"/", clientv3.WithPrefix())
		return err
	}); err != nil {
		return fmt.Errorf("final read: %w", err)
	}
	total, count := 0, -1
	for _, kv := range final.Kvs {
		var v int
		fmt.Sscan(string(kv.Value), &v)
		if string(kv.Key) == counter {
			count = v
		} else {
			total += v
		}
	}
	if total != accounts*start {
		t.violation(fmt.Sprintf("the accounts sum to %d at the end, not %d", total, accounts*start))
	}
	if t.r.Ok == 0 {
		return fmt.Errorf("no transaction committed")
	}
	lo, hi := t.r.Ok, t.r.Ok+t.r.Unknown
	if count < lo || count > hi {
		t.violation(fmt.Sprintf("the counter is %d: %d transactions committed and %d unknown",
			count, lo, hi-lo))
	}
	return nil
}

// holders counts the clients that believe they hold the lock (or lead) right now, in this
// process: more than one at a time is a violation, unless a holder's session ended.
type holders struct {
	mu  sync.Mutex
	now map[int]*concurrency.Session
}

// enter records client c as a holder and returns the others whose sessions are alive.
func (h *holders) enter(c int, s *concurrency.Session) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var others []int
	for o, os := range h.now {
		select {
		case <-os.Done():
		default:
			others = append(others, o)
		}
	}
	h.now[c] = s
	return others
}

func (h *holders) leave(c int) {
	h.mu.Lock()
	delete(h.now, c)
	h.mu.Unlock()
}

// withSessions runs body for clients 0..n-1 at once, each with its own connection and its own
// lease-backed session (TTL 10 s), and waits for all of them.
func withSessions(eps []string, n int, t *tally,
	body func(c int, cli *clientv3.Client, s *concurrency.Session)) {
	var wg sync.WaitGroup
	for c := 0; c < n; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cli, err := connect(eps, c)
			if err != nil {
				t.failed(err)
				return
			}
			defer cli.Close()
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				t.failed(fmt.Errorf("session: %w", err))
				return
			}
			defer s.Close()
			body(c, cli, s)
		}(c)
	}
	wg.Wait()
}

// mutexCounter: clients with their own lease-backed sessions take one Mutex in turn; inside
// the critical section they read a counter and write it back plus one with a write fenced
// by the lock (a Txn that compares the lock key's create revision). Checks: no two live
// holders at once, no fenced write refused while the holder's session lived, and the
// counter equals the fenced writes that succeeded (plus at most those with unknown outcome).
func mutexCounter(ctx context.Context, t *tally, eps []string, clients, ops int, pfx string) error {
	counter := pfx + "/count"
	setup, err := connect(eps, 0)
	if err != nil {
		return err
	}
	defer setup.Close()
	if err := retry(ctx, func(c context.Context) error {
		_, err := setup.Put(c, counter, "0")
		return err
	}); err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	h := &holders{now: map[int]*concurrency.Session{}}
	withSessions(eps, clients, t, func(c int, cli *clientv3.Client, s *concurrency.Session) {
		m := concurrency.NewMutex(s, pfx+"/lock")
		for i := 0; i < ops && ctx.Err() == nil; i++ {
			lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := m.Lock(lctx)
			cancel()
			if err != nil {
				t.failed(fmt.Errorf("lock: %w", err))
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if others := h.enter(c, s); len(others) > 0 {
				t.violation(fmt.Sprintf("client %d took the lock while %v held it", c, others))
			}
			var rctx context.Context
			rctx, cancel = context.WithTimeout(ctx, 5*time.Second)
			resp, err := cli.Get(rctx, counter)
			if err == nil && len(resp.Kvs) == 1 {
				var n int
				fmt.Sscan(string(resp.Kvs[0].Value), &n)
				var tr *clientv3.TxnResponse
				tr, err = cli.Txn(rctx).If(m.IsOwner()).
					Then(clientv3.OpPut(counter, fmt.Sprint(n+1))).Commit()
				switch {
				case err != nil:
					t.unknown(err)
				case tr.Succeeded:
					t.ok()
				default:
					select {
					case <-s.Done():
						t.failed(fmt.Errorf("the session ended inside the critical section"))
					default:
						t.violation(fmt.Sprintf("client %d holds the lock but its fenced write was refused", c))
					}
				}
			} else if err != nil {
				t.failed(err)
			}
			cancel()
			h.leave(c)
			uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := m.Unlock(uctx); err != nil {
				t.failed(fmt.Errorf("unlock: %w", err))
			}
			cancel()
		}
	})
	var final *clientv3.GetResponse
	if err := retry(ctx, func(c context.Context) error {
		var err error
		final, err = setup.Get(c, counter)
		return err
	}); err != nil {
		return fmt.Errorf("final read: %w", err)
	}
	var n int
	fmt.Sscan(string(final.Kvs[0].Value), &n)
	if n < t.r.Ok || n > t.r.Ok+t.r.Unknown {
		t.violation(fmt.Sprintf("the counter is %d: %d fenced increments succeeded and %d unknown",
			n, t.r.Ok, t.r.Unknown))
	}
	if t.r.Ok == 0 {
		return fmt.Errorf("no increment succeeded")
	}
	return nil
}

// election: candidates with their own sessions campaign on one election; a winner proclaims
// a few values, checks Leader() answers its own, and resigns. An observer follows with
// Observe. Checks: no two live leaders at once; Leader() and the last observed value agree
// with the winner's proclamations; the observed values of one leadership arrive in order.
func election(ctx context.Context, t *tally, eps []string, clients, ops int, pfx string) error {
	h := &holders{now: map[int]*concurrency.Session{}}
	ocli, err := connect(eps, 0)
	if err != nil {
		return err
	}
	defer ocli.Close()
	obs, err := concurrency.NewSession(ocli, concurrency.WithTTL(10))
	if err != nil {
		return fmt.Errorf("observer session: %w", err)
	}
	defer obs.Close()
	octx, ocancel := context.WithCancel(ctx)
	observed := make(chan string, 1024)
	go func() {
		defer close(observed)
		for resp := range concurrency.NewElection(obs, pfx+"/elect").Observe(octx) {
			if len(resp.Kvs) > 0 {
				select {
				case observed <- string(resp.Kvs[0].Value):
				default:
				}
			}
		}
	}()

	withSessions(eps, clients, t, func(c int, _ *clientv3.Client, s *concurrency.Session) {
		e := concurrency.NewElection(s, pfx+"/elect")
		for i := 0; i < ops && ctx.Err() == nil; i++ {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := e.Campaign(cctx, fmt.Sprintf("%d/%d/0", c, i))
			cancel()
			if err != nil {
				t.failed(fmt.Errorf("campaign: %w", err))
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if others := h.enter(c, s); len(others) > 0 {
				t.violation(fmt.Sprintf("client %d was elected while %v led", c, others))
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			last := fmt.Sprintf("%d/%d/0", c, i)
			// A proclamation whose outcome is unknown (its member died) may have been applied.
			maybe := last
			for j := 1; j <= 2; j++ {
				v := fmt.Sprintf("%d/%d/%d", c, i, j)
				if err := e.Proclaim(pctx, v); err != nil {
					if err == concurrency.ErrElectionNotLeader {
						select {
						case <-s.Done():
						default:
							t.violation(fmt.Sprintf("client %d lost its leadership with its session alive", c))
						}
					} else {
						t.unknown(err)
						maybe = v
					}
					break
				}
				last = v
				maybe = v
			}
			if resp, err := e.Leader(pctx); err == nil && len(resp.Kvs) > 0 {
				if got := string(resp.Kvs[0].Value); got != last && got != maybe {
					t.violation(fmt.Sprintf("client %d leads with %q but Leader() says %q", c, last, got))
				} else {
					t.ok()
				}
			} else if err != nil {
				t.unknown(err)
			}
			h.leave(c)
			if err := e.Resign(pctx); err != nil {
				t.failed(fmt.Errorf("resign: %w", err))
			}
			cancel()
		}
	})
	ocancel()
	// Values of one leadership (client/round/step) must be observed in step order.
	lastStep := map[string]int{}
	seen := 0
	for v := range observed {
		seen++
		var c, i, j int
		if _, err := fmt.Sscanf(v, "%d/%d/%d", &c, &i, &j); err != nil {
			t.violation(fmt.Sprintf("observed a value no candidate proclaimed: %q", v))
			continue
		}
		round := fmt.Sprintf("%d/%d", c, i)
		if prev, ok := lastStep[round]; ok && j < prev {
			t.violation(fmt.Sprintf("observed %q after step %d of the same leadership", v, prev))
		}
		lastStep[round] = j
	}
	if seen == 0 {
		t.violation("the observer saw no leader at all")
	}
	if t.r.Ok == 0 {
		return fmt.Errorf("no leadership completed")
	}
	return nil
}
