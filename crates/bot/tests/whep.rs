//! WHEP viewers against the real simplesfu binary over loopback: one
//! publisher (protocol v1) of video and audio, two viewers playing the room
//! over WHEP for about 3 s. Both must receive both streams as the socket.io
//! viewers do, and once their sessions are DELETEd the server holds nothing.

mod common;

use std::time::Duration;

#[test]
fn whep_viewers_play_video_and_audio_and_leave_nothing_behind() {
    let Some(server) = common::start_server() else {
        return;
    };
    let report = common::run_bot(
        &server,
        &[
            "--publishers",
            "1",
            "--subscribers",
            "0",
            "--whep-viewers",
            "2",
            "--audio",
            "--duration",
            "3",
        ],
    );

    assert_eq!(report["peers_joined"], 3, "{report:#}");
    assert_eq!(
        report["expected_streams"], 4,
        "two viewers, video and audio"
    );
    assert_eq!(
        report["receiving_streams"], 4,
        "both viewers get both streams: {report:#}"
    );
    assert_eq!(report["consumers"]["pushed"], 4, "four sendonly m-lines");
    for kind in ["video", "audio"] {
        let k = &report[kind];
        let loss = k["loss_pct"].as_f64().expect("loss");
        assert!(loss < 5.0, "{kind} loss {loss}%: {k:#}");
        assert!(k["latency"]["p50_ms"].as_f64().expect("latency") > 0.0);
    }
    assert!(
        report["video"]["packets"].as_u64().unwrap_or(0) > 2 * 100,
        "about 200 packets/s for 3 s per viewer: {report:#}"
    );
    let whep = &report["whep"];
    assert_eq!(whep["sessions"], 2, "{whep:#}");
    assert_eq!(whep["deleted"], 2, "both DELETEs confirmed: {whep:#}");
    assert!(whep["delete_error"].is_null(), "{whep:#}");

    // The publisher left with the bot; the DELETEd sessions left no
    // transport or consumer behind.
    let mut h = common::health(&server.url);
    for _ in 0..50 {
        if h["transports"] == 0 && h["consumers"] == 0 && h["peers"] == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        h = common::health(&server.url);
    }
    assert_eq!(
        (&h["peers"], &h["transports"], &h["consumers"]),
        (&0.into(), &0.into(), &0.into()),
        "{h:#}"
    );
}
