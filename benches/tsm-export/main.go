// tsm-export: a stand-in for `influx_inspect export`, which Debian's
// influxdb packages do not ship. It reads a database's TSM files and WAL
// segments straight from disk with the storage engine of Debian's
// golang-github-influxdb-influxdb-dev (the same 1.6.7 code influxd runs)
// and writes the file `influx -import` reads: a DDL section creating the
// database and its policies, then a DML section with one line per field
// value, as influx_inspect export does.
//
// Built by benches/backfill.sh in GOPATH mode against /usr/share/gocode;
// used only for the export/import baseline of that benchmark.
//
// Usage: tsm-export -datadir DIR -waldir DIR -database DB -out FILE
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/influxdata/influxdb/tsdb/engine/tsm1"
)

func main() {
	datadir := flag.String("datadir", "", "influxd's [data] dir")
	waldir := flag.String("waldir", "", "influxd's [data] wal-dir")
	database := flag.String("database", "", "the database to export")
	out := flag.String("out", "", "the export file")
	flag.Parse()
	if *datadir == "" || *waldir == "" || *database == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := export(*datadir, *waldir, *database, *out); err != nil {
		fmt.Fprintln(os.Stderr, "tsm-export:", err)
		os.Exit(1)
	}
}

func export(datadir, waldir, db, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	rps, err := dirs(filepath.Join(datadir, db))
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "# DDL")
	fmt.Fprintf(w, "CREATE DATABASE %s WITH NAME %s\n", db, rps[0])
	for _, rp := range rps[1:] {
		fmt.Fprintf(w, "CREATE RETENTION POLICY %s ON %s DURATION 0s REPLICATION 1\n", rp, db)
	}
	fmt.Fprintln(w, "# DML")
	fmt.Fprintf(w, "# CONTEXT-DATABASE:%s\n", db)
	lines := 0
	for _, rp := range rps {
		fmt.Fprintf(w, "# CONTEXT-RETENTION-POLICY:%s\n", rp)
		shards, err := dirs(filepath.Join(datadir, db, rp))
		if err != nil {
			return err
		}
		for _, shard := range shards {
			tsms, _ := filepath.Glob(filepath.Join(datadir, db, rp, shard, "*."+tsm1.TSMFileExtension))
			for _, path := range tsms {
				n, err := exportTSM(w, path)
				if err != nil {
					return fmt.Errorf("%s: %v", path, err)
				}
				lines += n
			}
			wals, _ := filepath.Glob(filepath.Join(waldir, db, rp, shard, "*."+tsm1.WALFileExtension))
			for _, path := range wals {
				n, err := exportWAL(w, path)
				if err != nil {
					return fmt.Errorf("%s: %v", path, err)
				}
				lines += n
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "tsm-export: %d lines\n", lines)
	return nil
}

// The subdirectories of dir, sorted.
func dirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), "_") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s holds no directories", dir)
	}
	return names, nil
}

func exportTSM(w *bufio.Writer, path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	r, err := tsm1.NewTSMReader(f)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	lines := 0
	for i := 0; i < r.KeyCount(); i++ {
		key, _ := r.KeyAt(i)
		values, err := r.ReadAll(key)
		if err != nil {
			return lines, err
		}
		lines += writeValues(w, key, values)
	}
	return lines, nil
}

func exportWAL(w *bufio.Writer, path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	r := tsm1.NewWALSegmentReader(f)
	defer r.Close()
	lines := 0
	for r.Next() {
		entry, err := r.Read()
		if err != nil {
			if err == io.EOF {
				break
			}
			// a torn last entry ends the segment, as influxd reads it
			break
		}
		if write, ok := entry.(*tsm1.WriteWALEntry); ok {
			keys := make([]string, 0, len(write.Values))
			for k := range write.Values {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				lines += writeValues(w, []byte(k), write.Values[k])
			}
		}
	}
	return lines, nil
}

// One line per value: `series field=value time`.
func writeValues(w *bufio.Writer, key []byte, values []tsm1.Value) int {
	series, field := tsm1.SeriesAndFieldFromCompositeKey(key)
	head := make([]byte, 0, len(series)+len(field)+2)
	head = append(head, series...)
	head = append(head, ' ')
	head = append(head, escapeField(field)...)
	head = append(head, '=')
	buf := make([]byte, 0, 64)
	for _, v := range values {
		buf = buf[:0]
		switch x := v.Value().(type) {
		case float64:
			buf = strconv.AppendFloat(buf, x, 'g', -1, 64)
		case int64:
			buf = strconv.AppendInt(buf, x, 10)
			buf = append(buf, 'i')
		case uint64:
			buf = strconv.AppendUint(buf, x, 10)
			buf = append(buf, 'u')
		case bool:
			buf = strconv.AppendBool(buf, x)
		case string:
			buf = append(buf, '"')
			buf = append(buf, stringEscaper.Replace(x)...)
			buf = append(buf, '"')
		default:
			continue
		}
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, v.UnixNano(), 10)
		buf = append(buf, '\n')
		w.Write(head)
		w.Write(buf)
	}
	return len(values)
}

var (
	stringEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	fieldEscaper  = strings.NewReplacer(`,`, `\,`, `=`, `\=`, ` `, `\ `)
)

func escapeField(field []byte) []byte {
	return []byte(fieldEscaper.Replace(string(field)))
}
