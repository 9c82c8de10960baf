package main

import (
	"fmt"
	"sync"
	"time"
)

// goroutines: workers that sleep (the runtime's timers: poll_oneoff under
// WASI) and report over a channel, a WaitGroup, a mutex, a timeout that
// fires and one that does not.
func goroutines(args []string) int {
	const workers = 8
	results := make(chan int, workers)
	var wg sync.WaitGroup
	started := time.Now()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(workers-i) * 5 * time.Millisecond)
			results <- i * i
		}(i)
	}
	wg.Wait()
	close(results)
	sum := 0
	for r := range results {
		sum += r
	}
	fmt.Println("sum of squares:", sum)
	fmt.Println("slept at least 40ms:", time.Since(started) >= 40*time.Millisecond)

	var mu sync.Mutex
	counter := 0
	var all sync.WaitGroup
	for i := 0; i < 100; i++ {
		all.Add(1)
		go func() {
			defer all.Done()
			mu.Lock()
			counter++
			mu.Unlock()
		}()
	}
	all.Wait()
	fmt.Println("counter:", counter)

	never := make(chan struct{})
	select {
	case <-never:
		fmt.Println("never")
	case <-time.After(20 * time.Millisecond):
		fmt.Println("timed out")
	}
	done := make(chan string)
	go func() { done <- "done" }()
	select {
	case msg := <-done:
		fmt.Println(msg)
	case <-time.After(5 * time.Second):
		fmt.Println("too slow")
	}
	ticker := time.NewTicker(3 * time.Millisecond)
	for i := 0; i < 3; i++ {
		<-ticker.C
	}
	ticker.Stop()
	fmt.Println("ticked 3 times")
	return 0
}
