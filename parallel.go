package neuralode

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// taskPool runs the tasks of one fork–join job on the calling goroutine and
// on a set of persistent helper goroutines, so that a large matrix product
// can use every core without paying a goroutine start (~0.4 µs plus a stack)
// per call.
//
// Determinism does not rest on the pool: the caller fixes the partition of
// the work into tasks from the problem size alone, each task writes its own
// outputs, and a task's result does not depend on which goroutine runs it
// or when. The pool only decides who runs what, by an atomic counter that
// any participant (the caller included) advances to claim the next task, so
// the caller never idles while a helper is still waking up.
//
// Hand-off. A solver posts jobs back to back (every stage of every step), a
// few microseconds of serial work apart. Waking a goroutine blocked on a
// channel puts it in the waker's own run queue, where another core picks it
// up only after a delay comparable to a whole task: measured here, two
// 32-row halves of a 64×512×512 product ran 1.1× faster than one core
// instead of 1.9×. So a helper that finishes a job spins on its job word
// for poolSpin before it blocks, and the caller spins on the count of
// helpers still working (yielding its processor now and then) before it
// blocks; a job posted within that window starts on an already running
// core. Each side announces that it is about to block and re-checks, so no
// wake-up is lost (see post, and wait).
//
// Helpers are started lazily, up to min(GOMAXPROCS, NumCPU)−1 (re-read at
// every run, so a later increase is honoured; never more than the cores,
// since a spinning helper would take a core from the caller), and live until
// close is called; the owner arranges that (mlpEvaluator does it from a
// finalizer). A panic in a task is recovered on the goroutine that ran it
// and re-raised on the caller's goroutine after every participant has
// finished, so a background goroutine never crashes the process and the
// owner's scratch is never written after run returns.
//
// A taskPool is used by one goroutine at a time (the owner of the
// evaluator). Run and close allocate nothing once the helpers exist.
type taskPool struct {
	hs     []*poolHelper // helpers started; helper i has worker id i+1
	quit   chan struct{}
	closed bool
	limit  int // most goroutines per job, caller included; 0: GOMAXPROCS

	task   func(int)      // current job; set before it is posted
	taskW  func(int, int) // or this one, which also receives the worker id
	ntasks int
	next   atomic.Int64
	gen    uint64 // jobs posted

	pending atomic.Int32  // helpers of the current job still working
	waiting atomic.Uint64 // job the caller is (about to be) blocked on done for; 0: none
	done    chan struct{}

	mu       sync.Mutex
	panicked bool
	panicVal any
}

// poolSharer is an evaluator with its own helper pool that a solver may use
// for its elementwise passes between evaluations. One pool for both keeps
// its helpers spinning from one job to the next: with two pools, the
// helper of the idle one parks during every evaluation (longer than
// poolSpin) and must be woken for the next pass, while the other pool's
// helper, still spinning, holds the second core (measured: the adjoint's
// passes over the parameter gradient barely sped up on two cores).
type poolSharer interface {
	workerPool() *taskPool
}

// poolHelper is the hand-off state of one helper goroutine.
type poolHelper struct {
	job    atomic.Uint64 // generation of the last job posted to it
	parked atomic.Uint64 // 1 + the job after which it is (about to be) blocked on wake; 0: not blocking
	wake   chan struct{}
}

// maxPoolHelpers bounds the helpers of one pool; the task partitions never
// have more than this many tasks per phase that could run at once anyway.
const maxPoolHelpers = 64

// poolSpin is how long a helper polls for the next job, and the caller for
// the end of the current one, before blocking. Jobs of one solve follow
// each other within a few microseconds, but a gradient has serial stretches
// longer than 50 µs (between its solves, the initial-step loops over the
// parameter gradient): 200 µs keeps the helpers on their cores through
// them (adjoint of p1_16x256x128 on two cores: median 9.8–9.9 ms against
// 10.2–10.5 with 50 µs, three alternating runs of 200 gradients). Between
// gradients the helpers go to sleep after this much busy waiting.
const poolSpin = 200 * time.Microsecond

// run executes task(0), …, task(ntasks−1), each exactly once, and returns
// when all have finished. With one task, or GOMAXPROCS = 1, everything runs
// on the caller's goroutine.
func (p *taskPool) run(ntasks int, task func(int)) {
	p.runJob(ntasks, task, nil)
}

// runW is run for tasks that keep per-goroutine scratch: task(i, w) gets
// the id w of the goroutine running it, 0 for the caller and 1…maxPoolHelpers
// for the helpers, so that no two tasks running at the same time share an
// id.
func (p *taskPool) runW(ntasks int, task func(i, w int)) {
	p.runJob(ntasks, nil, task)
}

// maxPoolWorkers bounds the worker ids runW hands out.
const maxPoolWorkers = maxPoolHelpers + 1

func (p *taskPool) runJob(ntasks int, task func(int), taskW func(int, int)) {
	if ntasks <= 0 {
		return
	}
	procs := min(runtime.GOMAXPROCS(0), runtime.NumCPU())
	if p.limit > 0 {
		procs = min(procs, p.limit)
	}
	k := min(ntasks, procs, maxPoolHelpers+1) - 1 // helpers wanted
	if k <= 0 || p.closed {
		for i := 0; i < ntasks; i++ {
			if taskW != nil {
				taskW(i, 0)
			} else {
				task(i)
			}
		}
		return
	}
	p.start(k)
	p.task, p.taskW, p.ntasks = task, taskW, ntasks
	p.next.Store(0)
	p.pending.Store(int32(k))
	p.gen++
	for _, h := range p.hs[:k] {
		h.post(p.gen)
	}
	p.claim(0)
	p.wait()
	p.task, p.taskW = nil, nil
	if p.panicked {
		v := p.panicVal
		p.panicked, p.panicVal = false, nil
		panic(v)
	}
}

// post hands job gen to the helper: a spinning helper sees the new job
// word; one that announced it blocks after the job this replaces gets a
// token on wake. The helper re-checks the job word after announcing, so
// either it sees the job or this sees the announcement. The announcement
// names the job it follows, so that a post delayed until the helper has
// already run the job and parked again cannot wake it for nothing.
func (h *poolHelper) post(gen uint64) {
	prev := h.job.Swap(gen)
	if h.parked.Load() == prev+1 && h.parked.CompareAndSwap(prev+1, 0) {
		h.wake <- struct{}{}
	}
}

// wait returns when every helper of the current job has finished: it spins
// for poolSpin, yielding its processor every so often (a helper woken from
// sleep may be queued on it), then blocks on done. The helper that finishes
// the job last signals done if the caller announced that it blocks for this
// job: the announcement names the job, so that a helper still on its way
// out of the previous one cannot wake the caller early.
func (p *taskPool) wait() {
	start := time.Now()
	for spins := 1; p.pending.Load() != 0; spins++ {
		if spins%64 != 0 {
			continue
		}
		runtime.Gosched()
		if time.Since(start) < poolSpin {
			continue
		}
		p.waiting.Store(p.gen)
		if p.pending.Load() == 0 && p.waiting.CompareAndSwap(p.gen, 0) {
			return
		}
		<-p.done
		return
	}
}

// start makes sure at least k helpers exist.
func (p *taskPool) start(k int) {
	if p.quit == nil {
		p.quit = make(chan struct{})
		p.done = make(chan struct{}, 1)
	}
	for len(p.hs) < k {
		h := &poolHelper{wake: make(chan struct{}, 1)}
		p.hs = append(p.hs, h)
		go p.helper(h, len(p.hs))
	}
}

// helper serves jobs until the pool is closed; id is its worker id.
func (p *taskPool) helper(h *poolHelper, id int) {
	var seen uint64
	for {
		if !h.await(seen, p.quit) {
			return
		}
		seen = h.job.Load()
		p.claim(id)
		if p.pending.Add(-1) == 0 && p.waiting.Load() == seen && p.waiting.CompareAndSwap(seen, 0) {
			p.done <- struct{}{}
		}
	}
}

// await returns true when a job after seen is posted, false when quit is
// closed: it polls the job word for poolSpin (yielding now and then, so
// that goroutines queued on this processor run), then announces that it
// blocks, re-checks, and blocks on wake.
func (h *poolHelper) await(seen uint64, quit chan struct{}) bool {
	start := time.Now()
	for spins := 1; h.job.Load() == seen; spins++ {
		if spins%64 != 0 {
			continue
		}
		runtime.Gosched()
		if time.Since(start) < poolSpin {
			select {
			case <-quit:
				return false
			default:
			}
			continue
		}
		h.parked.Store(seen + 1)
		if h.job.Load() != seen {
			if !h.parked.CompareAndSwap(seen+1, 0) {
				<-h.wake // post took the announcement and sends a token
			}
			return true
		}
		select {
		case <-h.wake:
			return true
		case <-quit:
			return false
		}
	}
	return true
}

// claim runs tasks of the current job on worker w until none is left,
// recording the first panic instead of propagating it.
func (p *taskPool) claim(w int) {
	defer func() {
		if v := recover(); v != nil {
			p.mu.Lock()
			if !p.panicked {
				p.panicked, p.panicVal = true, v
			}
			p.mu.Unlock()
			// Drain the remaining tasks so that the others stop early.
			p.next.Store(int64(p.ntasks))
		}
	}()
	n := int64(p.ntasks)
	for {
		i := p.next.Add(1) - 1
		if i >= n {
			return
		}
		if p.taskW != nil {
			p.taskW(int(i), w)
		} else {
			p.task(int(i))
		}
	}
}

// close stops the helpers. It must not run concurrently with run.
func (p *taskPool) close() {
	if p.closed {
		return
	}
	p.closed = true
	if p.quit != nil {
		close(p.quit)
	}
}
