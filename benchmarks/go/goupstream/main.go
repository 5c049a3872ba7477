// goupstream: a Go gRPC upstream for edge's benchmarks. It serves, on one port,
//
//   - edgedemo.library.v1.LibraryService, as edge/demo/library.py (benchmarks/upstream.py)
//     does for the calls the benchmarks make: GetBook over the three seeded books
//     (NOT_FOUND "<name> does not exist" otherwise). The other methods answer UNIMPLEMENTED.
//   - edgetest.v1.StreamService.Count, as benchmarks/stream_upstream.py does: `count` ticks
//     {index, padding: "x" * padding}, as fast as gRPC takes them, or `interval_seconds`
//     apart (fail_after/fail_code are ignored there too). Sum and Shout: UNIMPLEMENTED.
//
// Usage: goupstream [-addr 127.0.0.1:0] [PORT_FILE]
// Once serving it writes the bound port to PORT_FILE (write then rename), and stops on
// SIGINT or SIGTERM (graceful for 0.5 s, then hard).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang/protobuf/ptypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	library "gobench/gen/edgedemo/library/v1"
	edgetest "gobench/gen/edgetest/v1"
)

type libraryServer struct {
	library.UnimplementedLibraryServiceServer
	books map[string]*library.Book
}

func newLibrary() *libraryServer {
	s := &libraryServer{books: map[string]*library.Book{}}
	seed := []struct {
		title, author string
		genre         library.Genre
		pages         int64
	}{
		{"The Left Hand of Darkness", "Ursula K. Le Guin", library.Genre_GENRE_FICTION, 304},
		{"The Guns of August", "Barbara W. Tuchman", library.Genre_GENRE_HISTORY, 511},
		{"The Double Helix", "James D. Watson", library.Genre_GENRE_SCIENCE, 256},
	}
	for i, b := range seed {
		name := fmt.Sprintf("shelves/1/books/%d", i+1)
		s.books[name] = &library.Book{
			Name:       name,
			Title:      b.title,
			Author:     b.author,
			Genre:      b.genre,
			PageCount:  b.pages,
			CreateTime: ptypes.TimestampNow(),
		}
	}
	return s
}

// GetBook only reads the map, which is never written after start: safe without a lock.
func (s *libraryServer) GetBook(ctx context.Context, req *library.GetBookRequest) (*library.Book, error) {
	book, ok := s.books[req.Name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s does not exist", req.Name)
	}
	return book, nil
}

type streamServer struct {
	edgetest.UnimplementedStreamServiceServer
}

func (*streamServer) Count(req *edgetest.CountRequest, stream edgetest.StreamService_CountServer) error {
	padding := strings.Repeat("x", int(req.Padding))
	interval := time.Duration(req.IntervalSeconds * float64(time.Second))
	for index := int32(0); index < req.Count; index++ {
		if err := stream.Send(&edgetest.Tick{Index: index, Padding: padding}); err != nil {
			return err
		}
		if interval > 0 && index+1 < req.Count {
			select {
			case <-time.After(interval):
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
	}
	return nil
}

// writeAtomically mirrors benchmarks/upstream.py: a reader polling path never sees half a number.
func writeAtomically(path, text string) error {
	partial := strings.TrimSuffix(path, filepath.Ext(path)) + ".partial"
	if err := os.WriteFile(partial, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(partial, path)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	server := grpc.NewServer()
	library.RegisterLibraryServiceServer(server, newLibrary())
	edgetest.RegisterStreamServiceServer(server, &streamServer{})
	port := lis.Addr().(*net.TCPAddr).Port
	go func() {
		if err := server.Serve(lis); err != nil {
			log.Fatal(err)
		}
	}()
	if flag.NArg() > 0 {
		if err := writeAtomically(flag.Arg(0), strconv.Itoa(port)); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("goupstream serving on 127.0.0.1:%d", port)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
	done := make(chan struct{})
	go func() { server.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond):
		server.Stop()
	}
}
