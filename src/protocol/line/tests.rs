use std::borrow::Cow;

use bytes::Bytes;

use super::reference::reference;
use super::*;

/// Every line of `body`, which must all be valid.
fn ok(body: &[u8]) -> Vec<Line<'_>> {
    lines(body)
        .map(|l| l.unwrap_or_else(|e| panic!("{e} in {body:?}")))
        .collect()
}

/// `(number, text, measurement)` of every line, as strings.
fn summary(body: &[u8]) -> Vec<(usize, String, String)> {
    ok(body)
        .iter()
        .map(|l| {
            let text = String::from_utf8_lossy(l.text).into_owned();
            let m = String::from_utf8_lossy(l.measurement).into_owned();
            (l.number, text, m)
        })
        .collect()
}

fn s(number: usize, text: &str, measurement: &str) -> (usize, String, String) {
    (number, text.to_string(), measurement.to_string())
}

/// The error that stops `body`, as its message.
fn error(body: &[u8]) -> String {
    match lines(body).find_map(Result::err) {
        Some(e) => e.to_string(),
        None => panic!("no error in {body:?}"),
    }
}

#[test]
fn a_plain_line_is_its_whole_text_and_its_measurement() {
    let body = b"cpu value=1 1700000000000000000\n";
    let found = ok(body);
    assert_eq!(
        found,
        [Line {
            number: 1,
            start: 0,
            end: body.len() - 1,
            text: &body[..body.len() - 1],
            measurement: b"cpu",
        }]
    );
}

#[test]
fn tags_end_the_measurement_but_stay_in_the_line() {
    assert_eq!(
        summary(b"cpu,host=a,region=eu usage=0.5,idle=99i 1\nmem free=1u\n"),
        [
            s(1, "cpu,host=a,region=eu usage=0.5,idle=99i 1", "cpu"),
            s(2, "mem free=1u", "mem"),
        ]
    );
}

#[test]
fn escaped_commas_and_spaces_stay_in_the_measurement() {
    assert_eq!(
        summary(b"my\\ measure\\,ment,t=1 f=1\n"),
        [s(1, "my\\ measure\\,ment,t=1 f=1", "my\\ measure\\,ment")]
    );
}

#[test]
fn escaped_commas_spaces_and_equals_in_tags_do_not_end_the_key() {
    assert_eq!(
        summary(b"disk,pa\\=th=C:\\ Program\\ Files,dev=a\\,b free=1 2\n"),
        [s(
            1,
            "disk,pa\\=th=C:\\ Program\\ Files,dev=a\\,b free=1 2",
            "disk"
        )]
    );
}

#[test]
fn a_comma_or_space_after_a_double_backslash_is_still_escaped_as_in_influxdb() {
    assert_eq!(summary(b"a\\\\,b f=1\n"), [s(1, "a\\\\,b f=1", "a\\\\,b")]);
}

#[test]
fn quoted_strings_may_hold_spaces_commas_and_equals() {
    assert_eq!(
        summary(b"log msg=\"a b, c=d e\",n=1i 3\nnext f=1\n"),
        [
            s(1, "log msg=\"a b, c=d e\",n=1i 3", "log"),
            s(2, "next f=1", "next"),
        ]
    );
}

#[test]
fn quoted_strings_may_hold_newlines_which_count_as_physical_lines() {
    assert_eq!(
        summary(b"log msg=\"one\ntwo\r\nthree\" 1\nnext f=1\n"),
        [
            s(1, "log msg=\"one\ntwo\r\nthree\" 1", "log"),
            s(4, "next f=1", "next"),
        ]
    );
}

#[test]
fn escaped_quotes_and_backslashes_do_not_end_a_string() {
    assert_eq!(
        summary(b"log a=\"say \\\"hi\\\"\ny\",b=\"c:\\\\\" 1\nnext f=1\n"),
        [
            s(1, "log a=\"say \\\"hi\\\"\ny\",b=\"c:\\\\\" 1", "log"),
            s(3, "next f=1", "next"),
        ]
    );
}

#[test]
fn quotes_in_measurements_tags_and_field_keys_do_not_open_strings() {
    assert_eq!(
        summary(b"q\"m,t=a\"b \"k\"=1,x\"=2 1\nnext f=1\n"),
        [
            s(1, "q\"m,t=a\"b \"k\"=1,x\"=2 1", "q\"m"),
            s(2, "next f=1", "next"),
        ]
    );
}

#[test]
fn a_quote_inside_an_unquoted_value_opens_a_string_as_in_influxdb() {
    // InfluxDB's scanner opens a string at any quote in a field value.
    assert_eq!(
        summary(b"m f=1\"x\ny\" 2\nnext f=1\n"),
        [s(1, "m f=1\"x\ny\" 2", "m"), s(3, "next f=1", "next")]
    );
}

#[test]
fn crlf_ends_a_line_like_lf() {
    let body = b"cpu f=1 1\r\nmem f=2\r\n";
    let found = ok(body);
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].text, found[0].end), (&b"cpu f=1 1"[..], 9));
    assert_eq!((found[1].number, found[1].text), (2, &b"mem f=2"[..]));
    assert_eq!((found[1].start, found[1].end), (11, 18));
}

#[test]
fn blank_lines_are_skipped_but_counted() {
    assert_eq!(
        summary(b"\n\r\n \t \ncpu f=1\n\n\nmem f=2\n\n"),
        [s(4, "cpu f=1", "cpu"), s(7, "mem f=2", "mem")]
    );
}

#[test]
fn comments_are_skipped_but_counted_even_after_leading_whitespace() {
    assert_eq!(
        summary(b"# header\n  # indented, with \"quotes\" a=\"b\"\ncpu f=1\n#last"),
        [s(3, "cpu f=1", "cpu")]
    );
}

#[test]
fn a_last_line_without_newline_is_returned() {
    let body = b"cpu f=1\nmem f=2";
    let found = ok(body);
    assert_eq!(found[1].text, b"mem f=2");
    assert_eq!((found[1].start, found[1].end), (8, body.len()));
}

#[test]
fn leading_whitespace_is_not_part_of_the_line() {
    let body = b"  \tcpu,host=a f=1\n\0mem f=2\n";
    let found = ok(body);
    assert_eq!((found[0].start, found[0].text), (3, &b"cpu,host=a f=1"[..]));
    assert_eq!(found[0].measurement, b"cpu");
    assert_eq!((found[1].start, found[1].measurement), (19, &b"mem"[..]));
}

#[test]
fn multi_byte_utf8_is_kept_as_it_is() {
    let body = "温度,房间=客厅 值=21.5,备注=\"très chaud, 🔥\" 1\n".as_bytes();
    let found = ok(body);
    assert_eq!(found[0].measurement, "温度".as_bytes());
    assert_eq!(found[0].text, &body[..body.len() - 1]);
}

#[test]
fn an_empty_body_or_only_blank_lines_and_comments_have_no_lines() {
    assert!(ok(b"").is_empty());
    assert!(ok(b"\n\n  \r\n# nothing\n").is_empty());
}

#[test]
fn a_backslash_before_a_newline_escapes_it_as_in_influxdb() {
    assert_eq!(
        summary(b"cpu,host=a\\\nb f=1\nmem f=2\\\n"),
        [s(1, "cpu,host=a\\\nb f=1", "cpu"), s(3, "mem f=2\\", "mem")]
    );
}

#[test]
fn a_line_starting_with_a_comma_has_no_measurement() {
    assert_eq!(
        error(b"cpu f=1\n\n  ,host=a f=1\n"),
        "line 3: missing measurement: expected a name before the first ',' in ',host=a f=1'"
    );
}

#[test]
fn a_measurement_alone_has_no_field_set() {
    assert_eq!(
        error(b"cpu\n"),
        "line 1: missing field set: expected a space and field=value after the \
         measurement and tags in 'cpu'"
    );
}

#[test]
fn a_measurement_with_tags_only_has_no_field_set() {
    assert_eq!(
        error(b"# c\ncpu f=1\ncpu,host=a\\ b"),
        "line 3: missing field set: expected a space and field=value after the \
         measurement and tags in 'cpu,host=a\\ b'"
    );
}

#[test]
fn a_trailing_space_is_not_a_field_set() {
    assert_eq!(
        error(b"cpu,host=a \t\r\n"),
        "line 1: missing field set: expected a space and field=value after the \
         measurement and tags in 'cpu,host=a \\t'"
    );
}

#[test]
fn an_unterminated_string_is_reported_at_the_line_of_its_opening_quote() {
    assert_eq!(
        error(b"ok f=1\nlog a=\"x\ny\",b=\"open\nmore\n"),
        "line 3: unterminated string: expected a closing '\"' for the string that \
         opens at '\"open\\nmore\\n'"
    );
}

#[test]
fn a_comment_that_influxdb_would_read_past_its_newline_is_an_error() {
    assert_eq!(
        error(b"cpu f=1\n# a=\"b\ncpu f=2\n\"\n"),
        "line 2: comment does not end at its newline (influxdb 1.x would read on past \
         an open '\"' or an escaped newline): expected a one-line comment in \
         '# a=\"b\\ncpu f=2\\n\"'"
    );
    assert!(error(b"# continued \\\ncpu f=1\n").starts_with("line 1: comment does not end"));
}

#[test]
fn errors_count_blank_lines_comments_and_newlines_in_strings() {
    let e = lines(b"\n# c\nlog s=\"a\nb\" 1\n\nbad\n")
        .find_map(Result::err)
        .unwrap();
    assert_eq!(e.line, 6);
}

#[test]
fn error_excerpts_are_cut_to_forty_bytes() {
    let body = format!("{}é,host=a", "m".repeat(39));
    assert_eq!(
        error(body.as_bytes()),
        format!(
            "line 1: missing field set: expected a space and field=value after the \
             measurement and tags in '{}…'",
            "m".repeat(39)
        )
    );
}

#[test]
fn the_iterator_stops_after_an_error() {
    let mut it = lines(b"a f=1\nb\nc f=1\n");
    assert!(it.next().unwrap().is_ok());
    assert_eq!(it.next().unwrap().unwrap_err().line, 2);
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

#[test]
fn unescape_measurement_borrows_when_nothing_is_escaped() {
    assert!(matches!(
        unescape_measurement(b"cpu"),
        Cow::Borrowed(b"cpu")
    ));
    assert!(matches!(
        unescape_measurement(b"c:\\temp"),
        Cow::Borrowed(b"c:\\temp")
    ));
}

#[test]
fn unescape_measurement_unescapes_what_influxdb_unescapes() {
    assert_eq!(&*unescape_measurement(b"my\\ m\\,x"), b"my m,x");
    assert_eq!(&*unescape_measurement(b"a\\=b\\\"c"), b"a=b\"c");
    assert_eq!(&*unescape_measurement(b"a\\\\,b\\"), b"a\\,b\\");
}

/// The range of `part` inside `whole`, which must hold it.
fn range_in(whole: &Bytes, part: &Bytes) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    assert!(start + part.len() <= whole.len(), "slice outside the body");
    start..start + part.len()
}

#[test]
fn split_by_groups_runs_of_lines_without_copying_them() {
    let body =
        Bytes::from_static(b"cpu,h=a f=1\ncpu,h=b f=1\nmem f=2\r\ndisk f=3\ncpu f=4\nswap f=5");
    let batches = split_by(&body, |m| if m == b"cpu" { 'c' } else { 'o' }).unwrap();
    let ranges: Vec<(char, Vec<_>)> = batches
        .iter()
        .map(|(k, runs)| (*k, runs.iter().map(|r| range_in(&body, r)).collect()))
        .collect();
    assert_eq!(
        ranges,
        [('c', vec![0..24, 42..50]), ('o', vec![24..42, 50..58])]
    );
    assert_eq!(&batches[1].1[0][..], b"mem f=2\r\ndisk f=3\n");
}

#[test]
fn split_by_copies_many_short_runs_into_one_buffer_in_order() {
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("cpu v={i}\nmem v={i}\n"));
    }
    let body = Bytes::from(text);
    let batches = split_by(&body, |m| m == b"cpu").unwrap();
    assert_eq!(batches.len(), 2);
    for (is_cpu, runs) in &batches {
        assert_eq!(runs.len(), 1, "100 short runs become one chunk");
        let expected: String = (0..100)
            .map(|i| format!("{} v={i}\n", if *is_cpu { "cpu" } else { "mem" }))
            .collect();
        assert_eq!(&runs[0][..], expected.as_bytes());
    }
}

#[test]
fn split_by_calls_key_of_once_per_distinct_measurement() {
    let body = Bytes::from_static(b"cpu f=1\ncpu f=1\nmem f=1\ncpu f=1\nmem f=1\nnet f=1\n");
    let mut calls = Vec::new();
    let batches = split_by(&body, |m| {
        calls.push(String::from_utf8_lossy(m).into_owned());
        m.len()
    })
    .unwrap();
    assert_eq!(calls, ["cpu", "mem", "net"]);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].1.len(), 1);
    assert_eq!(batches[0].1[0], body);
}

#[test]
fn split_by_remembers_many_distinct_measurements() {
    let text: String = (0..100).map(|i| format!("m{} f=1\n", i % 40)).collect();
    let body = Bytes::from(text);
    let mut calls = 0;
    let batches = split_by(&body, |m| {
        calls += 1;
        m.len()
    })
    .unwrap();
    assert_eq!(calls, 40);
    let keys: Vec<usize> = batches.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [2, 3]);
    let lines_in = |runs: &[Bytes]| runs.iter().map(|r| ok(r).len()).sum::<usize>();
    assert_eq!(lines_in(&batches[0].1), 30);
    assert_eq!(lines_in(&batches[1].1), 70);
}

#[test]
fn split_by_passes_the_unescaped_measurement() {
    let body = Bytes::from_static(b"my\\ cpu f=1\n");
    let mut seen = Vec::new();
    split_by(&body, |m| seen.push(m.to_vec())).unwrap();
    assert_eq!(seen, [b"my cpu".to_vec()]);
}

#[test]
fn split_by_keeps_skipped_lines_inside_a_run_and_drops_them_between_runs() {
    let body = Bytes::from_static(b"# a\n  a f=1\n\n# b\na f=2\n# c\nb f=3\n\n");
    let batches = split_by(&body, |m| m[0]).unwrap();
    assert_eq!(&batches[0].1[0][..], b"  a f=1\n\n# b\na f=2\n");
    assert_eq!(&batches[1].1[0][..], b"b f=3\n");
}

#[test]
fn split_by_reports_the_first_malformed_line() {
    let body = Bytes::from_static(b"cpu f=1\nmem\n,x f=1\n");
    let e = split_by(&body, |_| 0).unwrap_err();
    assert_eq!(e.line, 2);
}

#[test]
fn split_by_of_a_body_without_lines_is_empty() {
    let body = Bytes::from_static(b"\n# only a comment\n");
    assert!(split_by(&body, |_| 0).unwrap().is_empty());
}

/// A small deterministic generator (xorshift64*), shared with the split tests.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(super) fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }
}

/// Pieces of bodies: bytes the scanner treats specially, and whole lines
/// (shared with the split tests).
pub(super) const PIECES: &[&[u8]] = &[
    b"cpu",
    b"mem",
    b",t=v",
    b" f=1",
    b" s=\"x y\"",
    b",g=\"a\"",
    b" 17",
    b"\n",
    b"\n",
    b"\r\n",
    b"\\",
    b"\\\n",
    b"\"",
    b" ",
    b",",
    b"=",
    b"#",
    b"\t",
    b"\0",
    b"\r",
    b"\xc3\xa9",
    b"a",
    b"\\\\",
    b"cpu,host=a usage=0.5 1\n",
    b"cpu,host=b usage=0.7,idle=99i 2\n",
    b"mem,host=a used=1i,free=2i 1\n",
    b"log msg=\"a,b=c\nd\",n=1i\n",
    b"log msg=\"x\\\"\n\\\\\",y=\"\n\n\" 3\r\n",
    b"m\\ x,t\\=k=v\\,w s=\"\\\"\" 2\r\n",
    b"  mem f=t\n",
    b"# note a=\"b\" c\n",
    b"\n\n",
];

#[test]
fn lines_agree_with_a_port_of_influxdb_on_random_bodies() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..100_000 {
        let mut body = Vec::new();
        for _ in 0..rng.next() % 24 {
            body.extend_from_slice(rng.pick(PIECES));
        }
        let (expected, error) = reference(&body);
        let mut found = Vec::new();
        let mut found_error = None;
        for line in lines(&body) {
            match line {
                Ok(l) => found.push((l.number, l.start, l.end, l.start + l.measurement.len())),
                Err(e) => found_error = Some(e.line),
            }
        }
        assert_eq!((found, found_error), (expected, error), "body {body:?}");
    }
}
