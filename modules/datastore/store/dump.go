package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// colKind says how Dump reads and prints a column.
type colKind int

const (
	kindText colKind = iota // a string, or NULL
	kindInt                 // an integer, or NULL
	kindBool                // a boolean (0/1 on SQLite)
	kindTime                // microseconds since the epoch, or NULL; printed RFC 3339
)

type dumpTable struct {
	name string
	cols []string
	kind []colKind
}

// tables (read only) lists every projected table in the order Reset empties them
// (children first) and Dump prints them, with their columns.
var tables = []dumpTable{
	{"build_dedup",
		[]string{"repo", "key", "number"},
		[]colKind{kindText, kindText, kindInt}},
	{"jobs",
		[]string{"repo", "build", "id", "position", "status", "depends_on", "manual", "attempt", "runner_id", "lease_id", "started_at", "finished_at", "exit_code", "reason"},
		[]colKind{kindText, kindInt, kindText, kindInt, kindText, kindText, kindBool, kindInt, kindText, kindText, kindTime, kindTime, kindInt, kindText}},
	{"builds",
		[]string{"repo", "number", "status", "ref", "commit_id", "params", "event", "user_name", "retry_of", "error", "created_at", "started_at", "finished_at", "cancel_requested"},
		[]colKind{kindText, kindInt, kindText, kindText, kindText, kindText, kindText, kindText, kindInt, kindText, kindTime, kindTime, kindTime, kindBool}},
	{"secrets",
		[]string{"repo", "name", "value", "updated_at"},
		[]colKind{kindText, kindText, kindText, kindTime}},
	{"repos",
		[]string{"name", "url", "default_branch", "poll_seconds", "webhook_secret", "created_at", "last_build"},
		[]colKind{kindText, kindText, kindText, kindInt, kindText, kindTime, kindInt}},
	{"tokens",
		[]string{"name", "scope", "hash", "created_at"},
		[]colKind{kindText, kindText, kindText, kindTime}},
}

// Reset empties every projected table and sets last applied to 0, for a
// rebuild from the log.
func (s *Store) Reset(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: reset: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := s.lockMeta(ctx, tx); err != nil {
		return fmt.Errorf("store: reset: %w", err)
	}
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+t.name); err != nil {
			return fmt.Errorf("store: reset: %s: %w", t.name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE meta SET last_applied = 0 WHERE id = 1"); err != nil {
		return fmt.Errorf("store: reset: last applied: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: reset: commit: %w", err)
	}
	return nil
}

// Dump returns every projected row and the last applied Seq as text: one
// line per row, "table col=value ...", tables in a fixed order and rows
// sorted, strings quoted, times in RFC 3339, absent values NULL. Two
// stores that projected the same events dump the same text, whatever
// their dialect: a rebuild is compared with the original this way.
func (s *Store) Dump(ctx context.Context) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return "", fmt.Errorf("store: dump: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	var b strings.Builder
	var last int64
	if err := tx.GetContext(ctx, &last, "SELECT last_applied FROM meta WHERE id = 1"); err != nil {
		return "", fmt.Errorf("store: dump: meta: %w", err)
	}
	fmt.Fprintf(&b, "meta last_applied=%d\n", last)
	for _, t := range tables {
		lines, err := dumpRows(ctx, tx, t)
		if err != nil {
			return "", fmt.Errorf("store: dump: %s: %w", t.name, err)
		}
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String(), nil
}

// dumpRows returns one table's rows as sorted lines.
func dumpRows(ctx context.Context, tx interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, t dumpTable) ([]string, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+strings.Join(t.cols, ", ")+" FROM "+t.name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lines []string
	dest := make([]any, len(t.cols))
	for rows.Next() {
		for i, k := range t.kind {
			switch k {
			case kindText:
				dest[i] = new(sql.NullString)
			case kindBool:
				dest[i] = new(sql.NullBool)
			default:
				dest[i] = new(sql.NullInt64)
			}
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		var b strings.Builder
		b.WriteString(t.name)
		for i, col := range t.cols {
			b.WriteString(" " + col + "=")
			switch v := dest[i].(type) {
			case *sql.NullString:
				if v.Valid {
					b.WriteString(strconv.Quote(v.String))
				} else {
					b.WriteString("NULL")
				}
			case *sql.NullBool:
				if v.Valid {
					b.WriteString(strconv.FormatBool(v.Bool))
				} else {
					b.WriteString("NULL")
				}
			case *sql.NullInt64:
				switch {
				case !v.Valid:
					b.WriteString("NULL")
				case t.kind[i] == kindTime:
					b.WriteString(time.UnixMicro(v.Int64).UTC().Format(time.RFC3339Nano))
				default:
					b.WriteString(strconv.FormatInt(v.Int64, 10))
				}
			}
		}
		lines = append(lines, b.String())
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Sort(lines)
	return lines, nil
}
