use prost::Message;

use super::super::messages::{LabelPair, Sample, TimeSeries, WriteRequest};
use super::*;

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| LabelPair::new(*n, *v)).collect(),
        samples: samples
            .iter()
            .map(|(value, timestamp_ms)| Sample {
                value: *value,
                timestamp_ms: *timestamp_ms,
            })
            .collect(),
    }
}

fn encode(series: Vec<TimeSeries>) -> Vec<u8> {
    WriteRequest { timeseries: series }.encode_to_vec()
}

fn measurements(buf: &[u8]) -> Result<Vec<String>, WriteError> {
    let mut names = Vec::new();
    scan(buf, |m, _| {
        names.push(String::from_utf8_lossy(m).into_owned())
    })?;
    Ok(names)
}

const T: i64 = 1_700_000_000_123;

#[test]
fn the_measurement_is_the_last_metric_name_or_influxdbs_default() {
    let buf = encode(vec![
        series(&[("__name__", "up"), ("job", "a")], &[(1.0, T)]),
        series(&[("job", "a")], &[(1.0, T)]),
        series(&[("__name__", "first"), ("__name__", "second")], &[]),
        series(&[("__name__", "")], &[(1.0, T)]),
    ]);
    assert_eq!(
        measurements(&buf).unwrap(),
        ["up", "prom_metric_not_specified", "second", ""]
    );
    let counts = scan(&buf, |_, _| {}).unwrap();
    assert_eq!(
        counts,
        Counts {
            series: 4,
            samples: 3
        }
    );
}

#[test]
fn each_series_is_handed_over_as_its_own_bytes() {
    let all = vec![
        series(&[("__name__", "a")], &[(1.0, T)]),
        series(&[("__name__", "b")], &[(2.0, T)]),
    ];
    let buf = encode(all.clone());
    let mut fields = Vec::new();
    scan(&buf, |_, field| fields.push(field.to_vec())).unwrap();
    assert_eq!(fields.concat(), buf);
    for (field, expected) in fields.iter().zip(all) {
        assert_eq!(
            WriteRequest::decode(field.as_slice()).unwrap().timeseries,
            [expected]
        );
    }
}

#[test]
fn non_finite_values_are_treated_as_influxdb_treats_them() {
    // NaN: dropped, the rest is written
    let nan = encode(vec![series(
        &[("__name__", "m")],
        &[(f64::NAN, T), (1.0, T)],
    )]);
    assert!(scan(&nan, |_, _| {}).is_ok());
    // ±Inf anywhere: the whole request is refused
    for inf in [f64::INFINITY, f64::NEG_INFINITY] {
        let buf = encode(vec![
            series(&[("__name__", "ok")], &[(1.0, T)]),
            series(&[("__name__", "m")], &[(5.0, T), (inf, T + 1)]),
        ]);
        assert_eq!(
            scan(&buf, |_, _| {}),
            Err(WriteError::Refused(
                "+/-Inf is an unsupported value for field value".into()
            ))
        );
    }
}

#[test]
fn timestamps_whose_nanoseconds_wrap_out_of_range_are_refused() {
    // 2^62 ms wraps to 0 ns, as in Go: stored at 0, not refused
    let wraps_to_zero = encode(vec![series(&[("__name__", "m")], &[(1.0, 1 << 62)])]);
    assert!(scan(&wraps_to_zero, |_, _| {}).is_ok());
    // this one wraps to i64::MIN ns; influxd 1.6.7 answers exactly this
    let ms: i64 = 144_115_188_075_855_872;
    assert_eq!(ms.wrapping_mul(1_000_000), i64::MIN);
    let buf = encode(vec![series(&[("__name__", "m")], &[(1.0, ms)])]);
    assert_eq!(
        scan(&buf, |_, _| {}),
        Err(WriteError::Refused(
            "time outside range -9223372036854775806 - 9223372036854775806".into()
        ))
    );
    // a NaN sample is dropped before its time is looked at
    let nan = encode(vec![series(&[("__name__", "m")], &[(f64::NAN, ms)])]);
    assert!(scan(&nan, |_, _| {}).is_ok());
}

#[test]
fn series_keys_are_measured_as_influxdb_measures_them() {
    // the boundaries influxd 1.6.7 showed: with "m_b", a value of 65507
    // bytes makes a key of 65535 (accepted), 65508 is refused
    let key = |name: &str, len: usize| {
        encode(vec![series(
            &[("__name__", name), ("t", &"y".repeat(len))],
            &[(1.0, T)],
        )])
    };
    assert!(scan(&key("m_b", 65507), |_, _| {}).is_ok());
    assert_eq!(
        scan(&key("m_b", 65508), |_, _| {}),
        Err(WriteError::Refused(
            "max key length exceeded: 65536 > 65535".into()
        ))
    );
    // `\,` in a measurement is unescaped before it is escaped again
    assert!(scan(&key("q\\,", 65506), |_, _| {}).is_ok());
    assert!(scan(&key("q\\,", 65507), |_, _| {}).is_err());
    // escaped tag bytes count twice, empty values not at all
    let escaped = encode(vec![series(
        &[("__name__", "m"), ("t", &",".repeat(32_760)), ("empty", "")],
        &[(1.0, T)],
    )]);
    // m ,__name__=m ,t= + 65520 + #!~#value = 1+11+3+65520+9 = 65544
    assert_eq!(
        scan(&escaped, |_, _| {}),
        Err(WriteError::Refused(
            "max key length exceeded: 65544 > 65535".into()
        ))
    );
    // a series without samples is never checked
    let no_samples = encode(vec![series(
        &[("__name__", "m"), ("t", &"y".repeat(70_000))],
        &[],
    )]);
    assert!(scan(&no_samples, |_, _| {}).is_ok());
}

#[test]
fn the_first_refusal_in_order_is_the_answer() {
    let long = "x".repeat(70_000);
    let long_first = encode(vec![
        series(&[("__name__", "m"), ("t", &long)], &[(1.0, T)]),
        series(&[("__name__", "x")], &[(f64::INFINITY, T)]),
    ]);
    assert_eq!(
        scan(&long_first, |_, _| {}),
        Err(WriteError::Refused(
            "max key length exceeded: 70024 > 65535".into()
        ))
    );
    let inf_first = encode(vec![
        series(&[("__name__", "x")], &[(f64::INFINITY, T)]),
        series(&[("__name__", "m"), ("t", &long)], &[(1.0, T)]),
    ]);
    assert!(matches!(
        scan(&inf_first, |_, _| {}),
        Err(WriteError::Refused(why)) if why.starts_with("+/-Inf")
    ));
    // a broken message after a refusal: the message is what is wrong
    let mut broken = inf_first.clone();
    broken.extend_from_slice(&[0x0a, 0x05]);
    assert!(matches!(
        scan(&broken, |_, _| {}),
        Err(WriteError::Protobuf(_))
    ));
}

#[test]
fn damaged_messages_say_which_series_and_what() {
    let good = encode(vec![
        series(&[("__name__", "a")], &[(1.0, T)]),
        series(&[("__name__", "b")], &[(1.0, T)]),
    ]);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 2);
    let e = scan(&truncated, |_, _| {}).unwrap_err().to_string();
    assert!(
        e.starts_with("the body is not a valid Prometheus WriteRequest: timeseries 1: "),
        "{e}"
    );
    // timeseries as a varint (what influxd calls "wrong wireType = 0 for field Timeseries")
    let e = scan(&[0x08, 0x01], |_, _| {}).unwrap_err().to_string();
    assert!(e.contains("field timeseries has wire type 0"), "{e}");
    // a sample's value as a varint
    let e = scan(&[0x0a, 0x04, 0x12, 0x02, 0x08, 0x01], |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("timeseries 0: sample 0: field value has wire type 0"),
        "{e}"
    );
    // a label's name as a fixed64
    let mut label = vec![0x0a, 0x0c, 0x0a, 0x0a, 0x09];
    label.extend_from_slice(&[0; 8]);
    label.push(0x12);
    label[1] = (label.len() - 2) as u8;
    label[3] = (label.len() - 4) as u8;
    let e = scan(&label, |_, _| {}).unwrap_err().to_string();
    assert!(e.contains("label 0: field name has wire type 1"), "{e}");
}

#[test]
fn unknown_fields_are_skipped_as_influxdb_skips_them() {
    let mut buf = encode(vec![series(&[("__name__", "a")], &[(1.0, T)])]);
    buf.extend_from_slice(&[0x1a, 0x03, b'm', b'e', b't']); // metadata
    buf.extend_from_slice(&[0x28, 0x07]); // 5: varint
    assert_eq!(measurements(&buf).unwrap(), ["a"]);
}

#[test]
fn split_keeps_each_series_bytes_and_drops_the_rest() {
    let all = vec![
        series(&[("__name__", "a")], &[(1.0, T)]),
        series(&[("__name__", "b")], &[(2.0, T)]),
        series(&[("__name__", "a"), ("x", "y")], &[(3.0, T)]),
        series(&[("job", "j")], &[(4.0, T)]),
    ];
    let mut buf = encode(all.clone());
    buf.extend_from_slice(&[0x1a, 0x01, b'm']);
    let cluster = |m: &[u8]| match m {
        b"a" => 7,
        b"b" => 3,
        _ => 0,
    };
    let batches = split(&buf, cluster).unwrap();
    let clusters: Vec<usize> = batches.iter().map(|(c, _)| *c).collect();
    assert_eq!(clusters, [7, 3, 0]);
    let decoded: Vec<Vec<TimeSeries>> = batches
        .iter()
        .map(|(_, b)| WriteRequest::decode(b.as_slice()).unwrap().timeseries)
        .collect();
    assert_eq!(decoded[0], [all[0].clone(), all[2].clone()]);
    assert_eq!(decoded[1], [all[1].clone()]);
    assert_eq!(decoded[2], [all[3].clone()]);
    assert_eq!(split(&[], cluster).unwrap(), vec![]);
    assert!(split(&[0x0a], cluster).is_err());
}

/// xorshift64*: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn the_scanner_accepts_exactly_what_a_protobuf_decoder_accepts() {
    let base = encode(vec![
        series(
            &[("__name__", "up"), ("job", "a b")],
            &[(1.0, T), (2.5, T + 15)],
        ),
        series(&[("__name__", "x")], &[(f64::NAN, 0), (-3.0, -1)]),
    ]);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut buf = base.clone();
        for _ in 0..1 + noise.below(3) {
            match noise.below(4) {
                0 if !buf.is_empty() => {
                    let i = noise.below(buf.len());
                    buf[i] ^= 1 << noise.below(8);
                }
                1 if !buf.is_empty() => {
                    let i = noise.below(buf.len());
                    buf[i] = noise.next() as u8;
                }
                2 => {
                    let cut = noise.below(buf.len() + 1);
                    buf.truncate(cut);
                }
                _ => {
                    let i = noise.below(buf.len() + 1);
                    buf.insert(i, noise.next() as u8);
                }
            }
        }
        let ours = match scan(&buf, |_, _| {}) {
            Err(WriteError::Protobuf(_)) => false,
            Ok(_) | Err(WriteError::Refused(_)) => true,
        };
        let prost = WriteRequest::decode(buf.as_slice()).is_ok();
        assert_eq!(ours, prost, "round {round}: {buf:02x?}");
        if ours {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(accepted > 1000 && refused > 1000, "{accepted} / {refused}");
}
