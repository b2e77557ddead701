//! Property test of clock hygiene's sweep (`dynamo_core::hygiene`) against
//! a model of where a retired actor's versions are.
//!
//! Three members exchange copies of a removed node's versions (handoff,
//! read repair, anti-entropy) and lose them to superseding writes, while
//! they scan, publish marks and gossip their views in any order, with
//! copies delayed in flight. Whenever the claimant concludes that the
//! actor is superseded, no member may have held a version of it at the
//! instant the claimant published that sweep's confirmation: the snapshot
//! the protocol takes. A copy in flight then, or landing later, was sent
//! from a version its sender has since superseded, so it is a superseded
//! one, even where it lands before its member hears of the conclusion.
//! When the claimant forgets the actor, no member may hold a version at
//! all, not even such a late copy — else the entries forgotten would let
//! it come back. Once the cluster calms down, a sweep must conclude and
//! the actor be forgotten.

use dynamo_core::hygiene::{CleanMark, MemberHygiene};
use dynamo_core::membership::{ClusterState, Member, MemberState};
use proptest::prelude::*;

const NODES: usize = 3;

#[derive(Clone, Debug)]
enum Event {
    /// Node `from` sends a copy of a version it holds to `to`.
    Send { from: usize, to: usize },
    /// The oldest copy in flight arrives (if any; `pick` chooses which).
    Deliver { pick: usize },
    /// A superseding write reaches `node`: its versions of the actor go.
    Supersede { node: usize },
    /// `node` scans its store.
    Scan { node: usize },
    /// `node`'s hygiene tick.
    Tick { node: usize },
    /// `from` gossips its view to `to`.
    Gossip { from: usize, to: usize },
    /// Every member ticks, then every pair gossips, in an order `order`
    /// picks: the protocol moving on quickly.
    Round { order: usize },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (0..NODES, 0..NODES).prop_map(|(from, to)| Event::Send { from, to }),
        3 => (0usize..8).prop_map(|pick| Event::Deliver { pick }),
        1 => (0..NODES).prop_map(|node| Event::Supersede { node }),
        3 => (0..NODES).prop_map(|node| Event::Scan { node }),
        2 => (0..NODES).prop_map(|node| Event::Tick { node }),
        2 => (0..NODES, 0..NODES).prop_map(|(from, to)| Event::Gossip { from, to }),
        2 => (0usize..6).prop_map(|order| Event::Round { order }),
    ]
}

fn id(i: usize) -> String {
    format!("n{i}")
}

struct Model {
    views: Vec<ClusterState>,
    holds: Vec<bool>,
    dirt: Vec<u64>,
    baseline: Vec<Option<u64>>,
    in_flight: Vec<usize>,
    /// The latest superseding sweep each member's last scan tidied by.
    tidied: Vec<u64>,
    /// The sweep whose confirmation the claimant last published, and
    /// whether any member held a version at that instant.
    published: Option<(u64, bool)>,
    concluded: bool,
    forgotten: bool,
}

impl Model {
    fn new(holds: Vec<bool>) -> Model {
        let member = |i: usize| Member {
            node_id: id(i),
            peer_addr: format!("{}:1", id(i)),
            http_addr: format!("{}:2", id(i)),
            weight: 1,
            generation: 1,
            version: 1,
            state: MemberState::Active,
            epoch: i as u64,
            ready_for: 0,
            hygiene: MemberHygiene::default(),
        };
        let mut view = ClusterState::new(member(0), 8, true);
        for i in 1..=NODES {
            view.members.insert(id(i), member(i));
        }
        // The retired node: n3.
        view.remove(&id(NODES));
        Model {
            views: vec![view; NODES],
            holds,
            dirt: vec![0; NODES],
            baseline: vec![None; NODES],
            in_flight: Vec::new(),
            tidied: vec![0; NODES],
            published: None,
            concluded: false,
            forgotten: false,
        }
    }

    fn superseded_in(&self, node: usize) -> bool {
        !self.views[node].retired().superseded.is_empty() || !self.views[node].retired().forgotten.is_empty()
    }

    /// The claimant (n0) moves; check the safety claims when it concludes
    /// and when it forgets.
    fn claimant_moves(&mut self) -> Result<(), TestCaseError> {
        let before = self.superseded_in(0);
        let forgot = !self.views[0].retired().forgotten.is_empty();
        let unpublished = self.views[0].sweep.confirm.is_none();
        self.views[0].sweep_step(&id(0));
        if unpublished && self.views[0].sweep.confirm.is_some() {
            self.published = Some((self.views[0].sweep.id, self.holds.iter().any(|&h| h)));
        }
        if !before && self.superseded_in(0) {
            let sweep = self.views[0].latest_superseded();
            prop_assert_eq!(
                self.published,
                Some((sweep, false)),
                "concluded sweep {} though a member held a version when it was confirmed",
                sweep
            );
            self.concluded = true;
        }
        if !forgot && !self.views[0].retired().forgotten.is_empty() {
            prop_assert!(
                !self.holds.iter().any(|&h| h),
                "forgot while a member holds a version: {:?}",
                self.holds
            );
            self.forgotten = true;
        }
        Ok(())
    }

    fn apply(&mut self, e: &Event) -> Result<(), TestCaseError> {
        match *e {
            Event::Send { from, to } => {
                if self.holds[from] && from != to {
                    self.in_flight.push(to);
                }
            }
            Event::Deliver { pick } => {
                if !self.in_flight.is_empty() {
                    let to = self.in_flight.remove(pick % self.in_flight.len());
                    // A member that knows the actor superseded drops it.
                    if !self.superseded_in(to) {
                        self.holds[to] = true;
                        self.dirt[to] += 1;
                    }
                }
            }
            Event::Supersede { node } => self.holds[node] = false,
            Event::Scan { node } => {
                if self.superseded_in(node) {
                    // The rewrite drops what the filter now drops.
                    self.holds[node] = false;
                    self.tidied[node] = self.views[node].latest_superseded();
                }
                if !self.holds[node] {
                    self.baseline[node] = Some(self.dirt[node]);
                }
            }
            Event::Tick { node } => {
                if self.baseline[node].is_some_and(|d| d != self.dirt[node]) {
                    self.baseline[node] = None;
                }
                let view = &self.views[node];
                let me = view.members[&id(node)].clone();
                let sweeping = !view.sweep.actors.is_empty();
                let latest = view.latest_superseded();
                let mut h = MemberHygiene {
                    clean: None,
                    confirmed: me.hygiene.confirmed,
                    drops: if self.tidied[node] == latest {
                        latest
                    } else {
                        me.hygiene.drops
                    },
                };
                if let (Some(dirt), true) = (self.baseline[node], sweeping) {
                    let mark = CleanMark {
                        sweep: view.sweep.id,
                        generation: me.generation,
                        dirt,
                    };
                    if view.confirmation_due(&id(node), &mark) {
                        h.confirmed = view.sweep.id;
                    }
                    h.clean = Some(mark);
                }
                if h != me.hygiene {
                    let entry = self.views[node].members.get_mut(&id(node)).expect("own entry");
                    entry.hygiene = h;
                    entry.version += 1;
                }
                if node == 0 {
                    self.claimant_moves()?;
                }
            }
            Event::Gossip { from, to } => {
                let theirs = self.views[from].clone();
                self.views[to].merge(&theirs);
                if to == 0 {
                    self.claimant_moves()?;
                }
            }
            Event::Round { order } => {
                let mut nodes: Vec<usize> = (0..NODES).collect();
                nodes.rotate_left(order % NODES);
                if order >= NODES {
                    nodes.reverse();
                }
                for &node in &nodes {
                    self.apply(&Event::Tick { node })?;
                }
                for &from in &nodes {
                    for &to in &nodes {
                        if from != to {
                            self.apply(&Event::Gossip { from, to })?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn a_sweep_concludes_only_when_no_version_is_left_and_does_once_calm(
        holds in proptest::collection::vec(proptest::bool::ANY, NODES),
        events in proptest::collection::vec(event(), 0..120),
    ) {
        let mut m = Model::new(holds);
        for e in &events {
            m.apply(e)?;
        }
        // Calm: every copy lands, a superseding write reaches everyone,
        // then members tick and gossip in rounds, scanning midway.
        while !m.in_flight.is_empty() {
            m.apply(&Event::Deliver { pick: 0 })?;
        }
        for node in 0..NODES {
            m.apply(&Event::Supersede { node })?;
            m.apply(&Event::Scan { node })?;
        }
        for order in 0..12 {
            m.apply(&Event::Round { order })?;
            if order == 6 {
                for node in 0..NODES {
                    m.apply(&Event::Scan { node })?;
                }
            }
        }
        prop_assert!(m.concluded, "a calm cluster must conclude its sweep");
        prop_assert!(m.forgotten && m.views.iter().all(|v| !v.retired().forgotten.is_empty()), "and then forget the actor");
    }
}

/// The random phases above must often reach a conclusion, or the safety
/// checks would rarely run.
#[test]
fn random_runs_often_reach_a_conclusion() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    let concluded = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(
            &(
                proptest::collection::vec(proptest::bool::ANY, NODES),
                proptest::collection::vec(event(), 0..120),
            ),
            |(holds, events)| {
                let mut m = Model::new(holds);
                for e in &events {
                    m.apply(e)?;
                }
                if m.concluded {
                    concluded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            },
        )
        .expect("the safety checks hold");
    let n = concluded.into_inner();
    eprintln!("{n} of 256 random runs concluded a sweep");
    assert!(n >= 256 / 10, "only {n} of 256 random runs concluded a sweep");
}

/// A copy still in flight when the sweep concludes lands on a member that
/// has not heard yet. That member must tidy its store before it says it
/// drops the actor; otherwise the claimant could forget the actor's
/// entries while the copy sits there, and it would come back.
#[test]
fn a_copy_landing_before_the_news_is_tidied_before_the_actor_is_forgotten() {
    let mut m = Model::new(vec![false, false, true]);
    let run = |m: &mut Model, e: Event| m.apply(&e).expect("safety holds");
    run(&mut m, Event::Send { from: 2, to: 1 });
    run(&mut m, Event::Supersede { node: 2 });
    for node in 0..NODES {
        run(&mut m, Event::Scan { node });
    }
    run(&mut m, Event::Tick { node: 0 });
    // Drive the sweep until n1 and n2 have answered its confirmation,
    // without the claimant hearing their answers yet.
    let answered = |m: &Model| {
        let sweep = m.views[0].sweep.id;
        m.views[0].sweep.confirm.is_some() && (1..NODES).all(|n| m.views[n].members[&id(n)].hygiene.confirmed == sweep)
    };
    for _ in 0..20 {
        if answered(&m) {
            break;
        }
        for to in 1..NODES {
            run(&mut m, Event::Gossip { from: 0, to });
            run(&mut m, Event::Tick { node: to });
        }
        if answered(&m) {
            break;
        }
        for from in 1..NODES {
            run(&mut m, Event::Gossip { from, to: 0 });
        }
        run(&mut m, Event::Tick { node: 0 });
    }
    assert!(answered(&m), "the sweep reached its confirmation");
    for from in 1..NODES {
        run(&mut m, Event::Gossip { from, to: 0 });
    }
    // The claimant answers its own round, then concludes.
    run(&mut m, Event::Tick { node: 0 });
    run(&mut m, Event::Tick { node: 0 });
    assert!(m.concluded, "the claimant concluded");
    // The delayed copy lands on n1, which has not heard.
    run(&mut m, Event::Deliver { pick: 0 });
    assert!(m.holds[1]);
    for _ in 0..3 {
        for to in 1..NODES {
            run(&mut m, Event::Gossip { from: 0, to });
            run(&mut m, Event::Tick { node: to });
            run(&mut m, Event::Gossip { from: to, to: 0 });
        }
        run(&mut m, Event::Tick { node: 0 });
    }
    assert!(!m.forgotten, "not forgotten before n1 tidies");
    for node in 0..NODES {
        run(&mut m, Event::Scan { node });
    }
    assert!(!m.holds[1], "the tidy dropped the copy");
    for order in 0..6 {
        run(&mut m, Event::Round { order });
    }
    assert!(m.forgotten, "forgotten once everyone tidied");
}

/// Found by the random runs: a copy sent before the sweep lands on n2
/// after n2 confirmed and before the claimant concludes. No member can
/// tell that landing from one just after the conclusion, so the sweep
/// still concludes; what keeps the copy from coming back is that the actor
/// is forgotten only once n2 has tidied it away.
#[test]
fn a_copy_landing_between_confirmation_and_conclusion_is_tidied_before_forgetting() {
    use Event::*;
    let mut m = Model::new(vec![false, true, false]);
    let events = [
        Send { from: 1, to: 2 },
        Supersede { node: 1 },
        Round { order: 0 },
        Scan { node: 2 },
        Supersede { node: 0 },
        Scan { node: 1 },
        Scan { node: 0 },
        Round { order: 1 },
        Tick { node: 2 },
        Gossip { from: 2, to: 0 },
        Deliver { pick: 0 },
        Round { order: 5 },
    ];
    for e in &events {
        m.apply(e).expect("safety holds");
    }
    assert!(m.concluded, "the claimant concluded");
    assert!(m.holds[2], "with the late copy on n2");
    for _ in 0..3 {
        m.apply(&Round { order: 0 }).expect("safety holds");
    }
    assert!(!m.forgotten, "not forgotten before n2 tidies");
    for node in 0..NODES {
        m.apply(&Scan { node }).expect("safety holds");
    }
    assert!(!m.holds[2], "the tidy dropped the copy");
    for order in 0..6 {
        m.apply(&Round { order }).expect("safety holds");
    }
    assert!(m.forgotten, "forgotten once everyone tidied");
}
