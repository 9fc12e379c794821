package neuralode

import (
	"runtime"
	"sync"
	"sync/atomic"
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
// Helpers are started lazily, up to GOMAXPROCS−1 (re-read at every run, so
// a later increase is honoured), and live until close is called; the owner
// arranges that (mlpEvaluator does it from a finalizer). A panic in a task
// is recovered on the goroutine that ran it and re-raised on the caller's
// goroutine after every participant has finished, so a background
// goroutine never crashes the process and the owner's scratch is never
// written after run returns.
//
// A taskPool is used by one goroutine at a time (the owner of the
// evaluator). Run and close allocate nothing once the helpers exist.
type taskPool struct {
	work    chan struct{} // one token per helper asked to join the current job
	quit    chan struct{}
	helpers int // helpers started
	closed  bool
	limit   int // most goroutines per job, caller included; 0: GOMAXPROCS

	task   func(int)      // current job; set before the tokens are sent
	taskW  func(int, int) // or this one, which also receives the worker id
	ntasks int
	next   atomic.Int64
	wg     sync.WaitGroup

	mu       sync.Mutex
	panicked bool
	panicVal any
}

// maxPoolHelpers bounds the helpers of one pool; the task partitions never
// have more than this many tasks per phase that could run at once anyway.
const maxPoolHelpers = 64

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
	procs := runtime.GOMAXPROCS(0)
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
	p.wg.Add(k)
	for i := 0; i < k; i++ {
		p.work <- struct{}{}
	}
	p.claim(0)
	p.wg.Wait()
	p.task, p.taskW = nil, nil
	if p.panicked {
		v := p.panicVal
		p.panicked, p.panicVal = false, nil
		panic(v)
	}
}

// start makes sure at least k helpers exist.
func (p *taskPool) start(k int) {
	if p.work == nil {
		p.work = make(chan struct{}, maxPoolHelpers)
		p.quit = make(chan struct{})
	}
	for p.helpers < k {
		p.helpers++
		go p.helper(p.helpers)
	}
}

// helper serves jobs until the pool is closed; id is its worker id.
func (p *taskPool) helper(id int) {
	for {
		select {
		case <-p.work:
			p.claim(id)
			p.wg.Done()
		case <-p.quit:
			return
		}
	}
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
