//! The active speaker against the real simplesfu binary (issue 14): three
//! bot publishers whose audio carries `ssrc-audio-level`, all quiet until the
//! measurement window starts, then the first loud (-20 dBov, the others -80),
//! then at 4 s the second instead. One receiver asked for `audioLevels`, the
//! other did not.
//!
//! The deadlines are asserted as it states them (announced within
//! 1 s, a change followed within 1.5 s; about 0.8 and 1.0 s measured on a
//! loaded 2-core machine with debug binaries). Steadiness is stricter than
//! "no more than one change per 2 s": one push per 4 s step. The 250 ms of
//! `audioLevels` gets 10% on the mean interval and lets two pushes come as
//! close as 100 ms, since a push delayed in the socket makes the gap before
//! the next one shorter without the server sending more often.

mod common;

use serde_json::Value;

fn ms(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("a time in ms, got {v}"))
}

#[test]
fn the_loud_publisher_is_announced_and_followed_and_levels_go_only_to_who_asked() {
    let Some(server) = common::start_server() else {
        return;
    };
    let report = common::run_bot(
        &server,
        &[
            "--publishers",
            "3",
            "--subscribers",
            "2",
            "--no-video",
            "--audio",
            "--audio-levels",
            "-80 0s:-20,-80 4s:-80,-20,-80",
            "--subscribe-audio-levels",
            "--duration",
            "8",
        ],
    );
    assert_eq!(report["peers_joined"], 5, "{report:#}");
    let speakers = &report["speakers"];
    eprintln!("speakers: {speakers:#}");

    let steps = speakers["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (&steps[0]["loudest"], &steps[1]["loudest"]),
        (&Value::from(0), &Value::from(1))
    );
    let announced = ms(&steps[0]["followed_ms"]);
    assert!(
        announced <= 1000.0,
        "the loud publisher was announced after {announced:.0} ms, not within 1 s"
    );
    let followed = ms(&steps[1]["followed_ms"]);
    assert!(
        followed <= 1500.0,
        "the change was followed after {followed:.0} ms, not within 1.5 s"
    );
    let pushes = speakers["active_speaker"].as_array().expect("pushes");
    let named: Vec<&Value> = pushes.iter().map(|p| &p["publisher"]).collect();
    assert_eq!(
        named,
        [&Value::from(0), &Value::from(1)],
        "one push per change, none while all were quiet: {pushes:?}"
    );

    let levels = &speakers["audio_levels"];
    let count = levels["count"].as_u64().expect("count");
    assert!(
        count >= 16,
        "audioLevels about every 250 ms over 8 s, got {count}: {levels}"
    );
    assert!(
        ms(&levels["mean_interval_ms"]) >= 225.0,
        "audioLevels more often than every 250 ms: {levels}"
    );
    assert!(
        ms(&levels["min_interval_ms"]) >= 100.0,
        "two audioLevels pushes close together: {levels}"
    );
    assert_eq!(
        levels["not_loudest_first"], 0,
        "audioLevels are loudest first: {levels}"
    );
    assert!(
        levels["led_by_loudest"].as_u64().expect("led") * 4 >= count * 3,
        "the loud publisher heads most pushes: {levels}"
    );
    assert_eq!(
        report["audio_levels_unasked"], 0,
        "the receiver that did not ask got audioLevels"
    );
}
