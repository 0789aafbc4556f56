package doccheck

import (
	"reflect"
	"testing"
)

const page = "# Title\n\n## The `pointsd serve` flags\n\nSome text, [a link](OTHER.md#x) and `[not](a-link.md)`.\n\n" +
	"| flag | default |\n| --- | --- |\n| `-a` | `1` |\n| `[x\\|y]` | two |\n\nAfter.\n\n" +
	"```\n## not a heading\n[nor](a-link.md)\n```\n\n## Again\n\n## Again\n\n![img](pic.svg)\n"

func TestTable(t *testing.T) {
	rows, err := Table(page, "The `pointsd serve` flags")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"`-a`", "`1`"}, {"`[x|y]`", "two"}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("Table = %q, want %q", rows, want)
	}
	if _, err := Table(page, "Again"); err == nil {
		t.Error("Table found a table under a heading that has none")
	}
	if _, err := Table(page, "not a heading"); err == nil {
		t.Error("Table read a heading inside a code block")
	}
}

func TestLinksAndAnchors(t *testing.T) {
	if got, want := Links(page), []string{"OTHER.md#x", "pic.svg"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Links = %q, want %q", got, want)
	}
	got := Anchors(page)
	for _, a := range []string{"title", "the-pointsd-serve-flags", "again", "again-1"} {
		if !got[a] {
			t.Errorf("Anchors lacks %q: %v", a, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("Anchors made one of a line inside a code block")
	}
}

func TestCode(t *testing.T) {
	if got, want := Code("`-users N` and `0`"), []string{"-users N", "0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Code = %q, want %q", got, want)
	}
}
