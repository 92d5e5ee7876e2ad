package grid

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// metrics are the row values a figure or a rule can use: a row's own, and
// (with the spec's control = true) self, the penalty of the row's top
// stitched onto itself at the same cut with the same recipe and seed, and
// excess, the row's penalty minus self.
var metrics = []string{"penalty", "stitched_acc", "direct_acc", "cka", "cka_unbiased", "top_acc", MetricSelf, MetricExcess}

// Metrics read from the self-stitch controls.
const (
	MetricSelf   = "self"
	MetricExcess = "excess"
)

// controlMetric reports whether a metric is read from the self-stitch controls.
func controlMetric(m string) bool { return m == MetricSelf || m == MetricExcess }

// Metrics lists every metric a rule term reads.
func (r *Rule) Metrics() []string {
	var out []string
	for _, c := range r.Conds {
		for _, t := range slices.Concat(c.Left.Terms, c.Right.Terms) {
			if t.Number == nil && !slices.Contains(out, t.Metric) {
				out = append(out, t.Metric)
			}
		}
	}
	return out
}

// aggregates a rule term can apply. Every term first averages each cut's
// value over the stitching seeds, then:
//
//	max, min, mean  over every (pair, cut) point selected
//	first, last     the value at each pair's first / last cut, averaged over the pairs
//	maxsd           the largest standard deviation over stitching seeds at any point
var aggregates = []string{"max", "min", "mean", "first", "last", "maxsd"}

// Rule is a verdict rule: comparisons joined by "and", e.g.
//
//	max(penalty, seeds-2-1+seeds-1-2) <= 3 and last(penalty, random-1) > 10
//
// Each side is a term or a sum of terms ("a - b + 1", the + and - between
// spaces); a term is a number or AGG(METRIC, PAIR+PAIR...[, CUT+CUT...]).
// Comparisons are <, <=, >, >= (≤ and ≥ also read).
type Rule struct {
	Text  string
	Conds []Cond
}

// Cond is one comparison of a rule.
type Cond struct {
	Left, Right Expr
	Op          string
}

// Expr is a sum of terms, each added or subtracted ("a - b + 1").
type Expr struct {
	Terms []Term
	// Signs are +1 or -1, one per term.
	Signs []float64
}

// String writes the expression as in the rule.
func (e Expr) String() string {
	var b strings.Builder
	for i, t := range e.Terms {
		switch {
		case i > 0 && e.Signs[i] < 0:
			b.WriteString(" - ")
		case i > 0:
			b.WriteString(" + ")
		case e.Signs[i] < 0:
			b.WriteString("-")
		}
		b.WriteString(t.String())
	}
	return b.String()
}

func (e Expr) constant() bool {
	for _, t := range e.Terms {
		if t.Number == nil {
			return false
		}
	}
	return true
}

// eval sums the terms; ok is false when a pair's rows are incomplete.
func (e Expr) eval(pts Points) (float64, bool, error) {
	sum := 0.0
	for i, t := range e.Terms {
		v, ok, err := t.eval(pts)
		if err != nil || !ok {
			return 0, ok, err
		}
		sum += e.Signs[i] * v
	}
	return sum, true, nil
}

// Term is a number or an aggregate over some pairs' rows.
type Term struct {
	Number *float64
	Agg    string
	Metric string
	Pairs  []string
	Cuts   []string // empty: every cut of the pair
}

// String writes the term as in the rule.
func (t Term) String() string {
	if t.Number != nil {
		return strconv.FormatFloat(*t.Number, 'g', -1, 64)
	}
	s := fmt.Sprintf("%s(%s, %s", t.Agg, t.Metric, strings.Join(t.Pairs, "+"))
	if len(t.Cuts) > 0 {
		s += ", " + strings.Join(t.Cuts, "+")
	}
	return s + ")"
}

// Pairs lists every pair the rule reads.
func (r *Rule) Pairs() []string {
	var out []string
	for _, c := range r.Conds {
		for _, t := range slices.Concat(c.Left.Terms, c.Right.Terms) {
			for _, p := range t.Pairs {
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// ParseRule parses a verdict rule.
func ParseRule(text string) (*Rule, error) {
	p := &ruleParser{toks: tokenize(text)}
	r := &Rule{Text: text}
	for {
		c, err := p.cond()
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", text, err)
		}
		r.Conds = append(r.Conds, c)
		if p.peek() == "" {
			return r, nil
		}
		if p.next() != "and" {
			return nil, fmt.Errorf("rule %q: expected \"and\" or the end after %s %s %s", text, c.Left, c.Op, c.Right)
		}
	}
}

type ruleParser struct {
	toks []string
	i    int
}

func (p *ruleParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *ruleParser) next() string {
	t := p.peek()
	if p.i < len(p.toks) {
		p.i++
	}
	return t
}

func (p *ruleParser) expect(want string) error {
	if got := p.next(); got != want {
		if got == "" {
			got = "the end"
		}
		return fmt.Errorf("expected %q, found %q", want, got)
	}
	return nil
}

func (p *ruleParser) cond() (Cond, error) {
	var c Cond
	var err error
	if c.Left, err = p.expr(); err != nil {
		return c, err
	}
	switch op := p.next(); op {
	case "<", "<=", ">", ">=":
		c.Op = op
	case "≤":
		c.Op = "<="
	case "≥":
		c.Op = ">="
	default:
		return c, fmt.Errorf("expected a comparison (<, <=, >, >=) after %s, found %q", c.Left, op)
	}
	if c.Right, err = p.expr(); err != nil {
		return c, err
	}
	if c.Left.constant() && c.Right.constant() {
		return c, errors.New("a comparison of two numbers says nothing about the rows")
	}
	return c, nil
}

func (p *ruleParser) expr() (Expr, error) {
	var e Expr
	sign := 1.0
	for {
		t, err := p.term()
		if err != nil {
			return e, err
		}
		e.Terms, e.Signs = append(e.Terms, t), append(e.Signs, sign)
		switch p.peek() {
		case "+":
			sign = 1
		case "-":
			sign = -1
		default:
			return e, nil
		}
		p.next()
	}
}

func (p *ruleParser) term() (Term, error) {
	tok := p.next()
	if tok == "" {
		return Term{}, errors.New("unexpected end")
	}
	if v, err := strconv.ParseFloat(tok, 64); err == nil {
		return Term{Number: &v}, nil
	}
	if !slices.Contains(aggregates, tok) {
		return Term{}, fmt.Errorf("%q is neither a number nor one of %s", tok, strings.Join(aggregates, ", "))
	}
	t := Term{Agg: tok}
	if err := p.expect("("); err != nil {
		return t, err
	}
	t.Metric = p.next()
	if !slices.Contains(metrics, t.Metric) {
		return t, fmt.Errorf("%s: metric must be one of %s, got %q", tok, strings.Join(metrics, ", "), t.Metric)
	}
	if err := p.expect(","); err != nil {
		return t, err
	}
	t.Pairs = strings.Split(p.next(), "+")
	if slices.Contains(t.Pairs, "") || slices.Contains(t.Pairs, ")") {
		return t, fmt.Errorf("%s: expected pair names joined by +", tok)
	}
	if p.peek() == "," {
		p.next()
		t.Cuts = strings.Split(p.next(), "+")
		if slices.Contains(t.Cuts, "") || slices.Contains(t.Cuts, ")") {
			return t, fmt.Errorf("%s: expected cut names joined by +", tok)
		}
	}
	return t, p.expect(")")
}

// tokenize splits a rule into names, numbers, brackets, commas and operators.
func tokenize(s string) []string {
	var out []string
	rs := []rune(s)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '(' || r == ')' || r == ',' || r == '≤' || r == '≥':
			out = append(out, string(r))
			i++
		case r == '<' || r == '>':
			if i+1 < len(rs) && rs[i+1] == '=' {
				out = append(out, string(rs[i:i+2]))
				i += 2
			} else {
				out = append(out, string(r))
				i++
			}
		default:
			j := i
			for j < len(rs) && !unicode.IsSpace(rs[j]) && !strings.ContainsRune("(),<>≤≥", rs[j]) {
				j++
			}
			out = append(out, string(rs[i:j]))
			i = j
		}
	}
	return out
}

// Points gives, for one pair and metric, the values at each cut (one per
// stitching seed), in the pair's cut order, and whether every unit of the
// pair has a row.
type Points interface {
	Values(pair, metric string) (cuts []string, values [][]float64, complete bool)
}

// Outcome is a rule's verdict on the rows.
type Outcome struct {
	// State is "holds", "fails" or "not yet run" (some rows missing).
	State string
	// Detail shows each comparison with the values found.
	Detail string
}

// Outcome states.
const (
	Holds     = "holds"
	Fails     = "fails"
	NotYetRun = "not yet run"
)

// Evaluate decides the rule on the rows.
func (r *Rule) Evaluate(pts Points) Outcome {
	var parts []string
	holds := true
	for _, c := range r.Conds {
		l, lok, err := c.Left.eval(pts)
		if err != nil {
			return Outcome{State: NotYetRun, Detail: err.Error()}
		}
		rv, rok, err := c.Right.eval(pts)
		if err != nil {
			return Outcome{State: NotYetRun, Detail: err.Error()}
		}
		if !lok || !rok {
			return Outcome{State: NotYetRun, Detail: "rows missing for " + strings.Join(r.Pairs(), ", ")}
		}
		ok := false
		switch c.Op {
		case "<":
			ok = l < rv
		case "<=":
			ok = l <= rv
		case ">":
			ok = l > rv
		case ">=":
			ok = l >= rv
		}
		holds = holds && ok
		mark := "✓"
		if !ok {
			mark = "✗"
		}
		parts = append(parts, fmt.Sprintf("%s = %s %s %s = %s %s", c.Left, fmtNum(l), c.Op, fmtNum(rv), c.Right, mark))
	}
	st := Holds
	if !holds {
		st = Fails
	}
	return Outcome{State: st, Detail: strings.Join(parts, "; ")}
}

func fmtNum(v float64) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// eval computes a term; ok is false when a pair's rows are incomplete.
func (t Term) eval(pts Points) (float64, bool, error) {
	if t.Number != nil {
		return *t.Number, true, nil
	}
	var all []float64
	var ends []float64
	maxSD := 0.0
	for _, p := range t.Pairs {
		cuts, vals, complete := pts.Values(p, t.Metric)
		if !complete {
			return 0, false, nil
		}
		var sel []int
		for i, c := range cuts {
			if len(t.Cuts) == 0 || slices.Contains(t.Cuts, c) {
				sel = append(sel, i)
			}
		}
		for _, c := range t.Cuts {
			if !slices.Contains(cuts, c) {
				return 0, false, fmt.Errorf("%s: pair %s has no cut %q", t, p, c)
			}
		}
		if len(sel) == 0 {
			return 0, false, fmt.Errorf("%s: pair %s has no values of %s", t, p, t.Metric)
		}
		for _, i := range sel {
			if len(vals[i]) == 0 && controlMetric(t.Metric) {
				return 0, false, fmt.Errorf("%s: pair %s has no %s at cut %s: its top's self-stitch control has no row there yet", t, p, t.Metric, cuts[i])
			}
			if len(vals[i]) == 0 {
				return 0, false, fmt.Errorf("%s: pair %s has no %s at cut %s", t, p, t.Metric, cuts[i])
			}
			m, sd := meanSD(vals[i])
			all = append(all, m)
			maxSD = math.Max(maxSD, sd)
		}
		switch t.Agg {
		case "first":
			ends = append(ends, all[len(all)-len(sel)])
		case "last":
			ends = append(ends, all[len(all)-1])
		}
	}
	switch t.Agg {
	case "max":
		return slices.Max(all), true, nil
	case "min":
		return slices.Min(all), true, nil
	case "mean":
		m, _ := meanSD(all)
		return m, true, nil
	case "first", "last":
		m, _ := meanSD(ends)
		return m, true, nil
	case "maxsd":
		return maxSD, true, nil
	}
	return 0, false, fmt.Errorf("unknown aggregate %q", t.Agg)
}

// meanSD is the mean and the sample standard deviation (0 for one value).
func meanSD(v []float64) (float64, float64) {
	if len(v) == 0 {
		return math.NaN(), 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	m := s / float64(len(v))
	if len(v) < 2 {
		return m, 0
	}
	ss := 0.0
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(v)-1))
}
