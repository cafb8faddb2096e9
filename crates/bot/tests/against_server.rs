//! The bot against the real simplesfu binary over loopback: one publisher and
//! two subscribers for about 3 s; both subscribers must receive the video.

mod common;

#[test]
fn one_publisher_two_subscribers_receive_video_with_little_loss() {
    let Some(server) = common::start_server() else {
        return;
    };
    let report = common::run_bot(
        &server,
        &["--publishers", "1", "--subscribers", "2", "--duration", "3"],
    );

    assert_eq!(report["peers_joined"], 3, "{report:#}");
    assert_eq!(
        report["expected_streams"], 2,
        "two subscribers, one video each"
    );
    assert_eq!(
        report["receiving_streams"], 2,
        "both subscribers receive video: {report:#}"
    );
    assert_eq!(report["receivers_without_media"], 0);
    let video = &report["video"];
    assert!(
        video["packets"].as_u64().unwrap_or(0) > 2 * 100,
        "about 200 packets/s for 3 s each: {video:#}"
    );
    let loss = video["loss_pct"].as_f64().expect("loss");
    assert!(loss < 5.0, "video loss {loss}% is too high: {video:#}");
    assert!(video["latency"]["p50_ms"].as_f64().expect("latency") > 0.0);
}
