//! Audio levels: the levels a sender puts in its audio packets
//! (`ssrc-audio-level`) come out of the router as one report per producer
//! about every 100 ms, with the mean level and the packet count; packets
//! without a level add nothing.

use crate::harness::Sim;
use crate::media::opus_parameters;
use simplesfu_engine::{Direction, EngineEvent};
use simplesfu_proto::types::rtp_parameters::MediaKind;
use std::time::Duration;
use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};

const AUDIO_SSRC: u32 = 3333;

/// `sender` writes one 20 ms opus packet carrying `level` (-dBov) in its header extension.
fn send_audio(sim: &mut Sim, sender: usize, seq: u64, level: Option<i8>) {
    let now = sim.now;
    let mut api = sim.peer_mut(sender).rtc.direct_api();
    let stream = api
        .stream_tx(&Ssrc::from(AUDIO_SSRC))
        .expect("a declared stream");
    let ext = ExtensionValues {
        audio_level: level,
        voice_activity: level.map(|l| l > -40),
        ..Default::default()
    };
    let timestamp = (seq * 960) as u32;
    stream.write_rtp(
        RtpWrite::new(Pt::from(111), seq.into(), timestamp, now, vec![0xfc; 40]).ext_vals(ext),
    );
}

#[test]
fn a_senders_levels_are_reported_per_producer_about_every_100_ms() {
    let mut sim = Sim::new();
    let sender = sim.connected_peer(Direction::Send);
    let producer = sim.produce(sender, MediaKind::Audio, opus_parameters("0", AUDIO_SSRC));
    // One second of speech at -20 dBov, 20 ms packets.
    sim.every(
        Duration::from_millis(20),
        Duration::from_secs(1),
        |sim, i| send_audio(sim, sender, i + 1, Some(-20)),
    );
    let reports: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::AudioLevels(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(
        (8..=11).contains(&reports.len()),
        "about ten reports in a second, got {}",
        reports.len()
    );
    for report in &reports {
        assert_eq!(report.len(), 1, "one producer");
        let r = report[0];
        assert_eq!(
            (r.producer_id, r.level_dbov, r.voice),
            (producer, 20, Some(true))
        );
        assert!(
            (3..=7).contains(&r.packets),
            "about five packets per report: {}",
            r.packets
        );
    }

    // Packets without a level report nothing (once the last levelled ones are out).
    sim.advance(Duration::from_millis(300));
    sim.events.clear();
    sim.every(
        Duration::from_millis(20),
        Duration::from_millis(500),
        |sim, i| send_audio(sim, sender, 100 + i, None),
    );
    assert!(
        !sim.events
            .iter()
            .any(|e| matches!(e, EngineEvent::AudioLevels(_))),
        "no report: {:?}",
        sim.events
    );
}
