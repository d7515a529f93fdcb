//! Edge cases of [`campaign_report`](super::campaign_report).

use super::*;
use crate::CoreError;

fn arm(name: &str, users: u64, converted: u64) -> ArmAggregate {
    ArmAggregate {
        arm: name.to_string(),
        users_exposed: users,
        exposures: users * 3,
        clicks: users / 2,
        users_clicked: users / 3,
        conversions: converted + converted / 4,
        users_converted: converted,
        revenue: converted as f64 * 20.0,
        // each converted user spent 20
        revenue_sumsq: converted as f64 * 400.0,
        cost: None,
        ctr_moments: None,
        ..Default::default()
    }
}

/// Every float the report carries is finite (serde_json would silently turn NaN into null, so
/// check the structs themselves).
fn assert_all_finite(r: &CampaignReport) {
    let check = |what: &str, v: Option<f64>| {
        if let Some(v) = v {
            assert!(v.is_finite(), "{what} = {v}");
        }
    };
    let check_ci = |what: &str, ci: Option<Interval>| {
        if let Some(ci) = ci {
            assert!(
                ci.low.is_finite() && ci.high.is_finite() && ci.low <= ci.high,
                "{what}: {ci:?}"
            );
        }
    };
    check("alpha", Some(r.alpha));
    for a in &r.arms {
        for (what, v) in [
            ("ctr", a.ctr),
            ("conversion_rate", a.conversion_rate),
            ("revenue", Some(a.revenue)),
            ("revenue_per_user", a.revenue_per_user),
            ("revenue_per_user_sd", a.revenue_per_user_sd),
            ("cost", a.cost),
            ("roi", a.roi),
            ("roas", a.roas),
        ] {
            check(what, v);
        }
    }
    for c in &r.comparisons {
        for p in [&c.conversion_rate, &c.ctr] {
            for (what, v) in [
                ("treatment_rate", p.treatment_rate),
                ("control_rate", p.control_rate),
                ("absolute_lift", p.absolute_lift),
                ("relative_lift", p.relative_lift),
                ("z", p.z),
                ("p_value", p.p_value),
            ] {
                check(what, v);
            }
            check_ci("absolute_lift_ci", p.absolute_lift_ci);
            check_ci("relative_lift_ci", p.relative_lift_ci);
        }
        let m = &c.revenue_per_user;
        for (what, v) in [
            ("treatment_mean", m.treatment_mean),
            ("control_mean", m.control_mean),
            ("difference", m.difference),
            ("relative_difference", m.relative_difference),
            ("t", m.t),
            ("df", m.df),
            ("p_value", m.p_value),
        ] {
            check(what, v);
        }
        check_ci("difference_ci", m.difference_ci);
    }
    if let Some(srm) = &r.srm {
        check("chi2", srm.chi2);
        check("srm p", srm.p_value);
        for a in &srm.arms {
            check("expected", Some(a.expected_users));
            check("fraction", Some(a.expected_fraction));
        }
    }
    serde_json::to_string(r).expect("serialisable");
}

fn codes(r: &CampaignReport) -> Vec<WarningCode> {
    r.data_warnings.iter().map(|w| w.code).collect()
}

#[test]
fn stats_report_basic_shape() {
    let arms = [arm("control", 10_000, 500), arm("b", 10_000, 600)];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    assert_eq!(r.control_arm.as_deref(), Some("control"));
    assert_eq!(r.arms.len(), 2);
    assert_eq!(r.comparisons.len(), 1);
    let c = &r.comparisons[0];
    assert_eq!((c.arm.as_str(), c.control_arm.as_str()), ("b", "control"));
    assert!((c.conversion_rate.absolute_lift.unwrap() - 0.01).abs() < 1e-12);
    assert!((c.conversion_rate.relative_lift.unwrap() - 0.2).abs() < 1e-12);
    assert!(c.conversion_rate.significant);
    assert!(c.revenue_per_user.t.is_some());
    assert!(r.data_warnings.is_empty(), "{:?}", r.data_warnings);
    let srm = r.srm.as_ref().unwrap();
    assert_eq!(srm.split, SplitSource::AssumedEqual);
    assert!(!srm.mismatch);

    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    for key in [
        "alpha",
        "control_arm",
        "arms",
        "comparisons",
        "srm",
        "data_warnings",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    let cr = &json["comparisons"][0]["conversion_rate"];
    assert!(cr["absolute_lift_ci"]["low"].is_f64() && cr["relative_lift_ci"]["high"].is_f64());
    assert_eq!(json["srm"]["split"], "assumed_equal");
    assert!(json["arms"][0]["roi"].is_null());
}

#[test]
fn stats_report_no_control_arm() {
    let arms = [arm("a", 1000, 50), arm("b", 1000, 60)];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    assert_eq!(r.control_arm, None);
    assert!(r.comparisons.is_empty());
    assert_eq!(codes(&r), vec![WarningCode::NoControlArm]);
    assert_eq!(r.arms.len(), 2);
    assert!(r.srm.is_some(), "the SRM check does not need a control");

    // An explicit control works without an arm called "control"...
    let r = campaign_report(&arms, Some("a"), None, 0.05).unwrap();
    assert_eq!(r.comparisons.len(), 1);
    assert_eq!(r.comparisons[0].arm, "b");
    // ...and a control that does not exist is the caller's error.
    let err = campaign_report(&arms, Some("ctrl"), None, 0.05).unwrap_err();
    assert!(matches!(err, CoreError::InvalidParameter(m) if m.contains("'ctrl'")));
}

#[test]
fn stats_report_zero_exposures_in_an_arm() {
    let mut empty = arm("b", 0, 0);
    empty.exposures = 0;
    let arms = [arm("control", 1000, 50), empty];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    let b = &r.arms[1];
    assert_eq!(
        (
            b.ctr,
            b.conversion_rate,
            b.revenue_per_user,
            b.revenue_per_user_sd
        ),
        (None, None, None, None)
    );
    let c = &r.comparisons[0];
    for p in [&c.conversion_rate, &c.ctr] {
        assert_eq!(p.treatment_rate, None);
        assert!(p.control_rate.is_some());
        assert_eq!(
            (p.absolute_lift, p.relative_lift, p.z, p.p_value),
            (None, None, None, None)
        );
        assert_eq!((p.absolute_lift_ci, p.relative_lift_ci), (None, None));
        assert!(!p.significant);
    }
    let m = &c.revenue_per_user;
    assert_eq!(
        (m.treatment_mean, m.difference, m.t, m.df, m.p_value),
        (None, None, None, None, None)
    );
    assert_eq!(m.difference_ci, None);
    // The empty arm is a glaring sample-ratio mismatch under an equal split.
    assert!(r.srm.unwrap().mismatch);
}

#[test]
fn stats_report_zero_conversions() {
    // Only one arm without conversions: the tests work, the relative interval does not (log 0).
    let arms = [arm("control", 1000, 40), arm("b", 1000, 0)];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    assert_eq!(r.arms[1].conversion_rate, Some(0.0));
    let p = &r.comparisons[0].conversion_rate;
    assert_eq!(p.relative_lift, Some(-1.0));
    assert_eq!(p.relative_lift_ci, None);
    assert!(p.z.is_some() && p.absolute_lift_ci.is_some() && p.significant);

    // No conversions anywhere: pooled proportion 0, no z-test; no relative lift (0/0).
    let arms = [arm("control", 1000, 0), arm("b", 1000, 0)];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    let p = &r.comparisons[0].conversion_rate;
    assert_eq!(
        (p.z, p.p_value, p.relative_lift, p.relative_lift_ci),
        (None, None, None, None)
    );
    assert_eq!(p.absolute_lift, Some(0.0));
    assert!(!p.significant);
    // No revenue anywhere: both variances are 0, the t-test is undefined.
    let m = &r.comparisons[0].revenue_per_user;
    assert_eq!(
        (m.difference, m.t, m.relative_difference),
        (Some(0.0), None, None)
    );
}

#[test]
fn stats_report_single_user_arm() {
    let single = ArmAggregate {
        arm: "b".into(),
        users_exposed: 1,
        exposures: 1,
        clicks: 1,
        users_clicked: 1,
        conversions: 1,
        users_converted: 1,
        revenue: 35.0,
        revenue_sumsq: 35.0 * 35.0,
        cost: Some(5.0),
        ctr_moments: Some(RatioMoments::from_pairs([(1.0, 1.0)])),
        ..Default::default()
    };
    let arms = [arm("control", 1000, 50), single];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    let b = &r.arms[1];
    assert_eq!(b.revenue_per_user, Some(35.0));
    assert_eq!(b.revenue_per_user_sd, None);
    assert_eq!((b.roi, b.roas), (Some(6.0), Some(7.0)));
    let m = &r.comparisons[0].revenue_per_user;
    assert_eq!(m.difference, Some(35.0 - 1.0)); // control: 50·20 / 1000
    assert_eq!(
        (m.t, m.df, m.p_value, m.difference_ci),
        (None, None, None, None)
    );
    assert!(!m.significant);
    // The proportion tests still run with n = 1.
    assert!(r.comparisons[0].conversion_rate.z.is_some());
}

#[test]
fn stats_report_conversions_without_exposure() {
    let mut odd = arm("b", 100, 10);
    odd.users_converted = 150;
    odd.conversions = 160;
    let arms = [arm("control", 1000, 50), odd];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    assert_eq!(
        r.arms[1].conversion_rate,
        Some(1.5),
        "the rate is still computed"
    );
    assert!(codes(&r).contains(&WarningCode::ConvertedWithoutExposure));
    let w = r
        .data_warnings
        .iter()
        .find(|w| w.code == WarningCode::ConvertedWithoutExposure)
        .unwrap();
    assert_eq!(w.arm.as_deref(), Some("b"));
    let p = &r.comparisons[0].conversion_rate;
    assert_eq!(p.treatment_rate, Some(1.5));
    assert!((p.absolute_lift.unwrap() - 1.45).abs() < 1e-12);
    // Not a proportion: no test, no interval.
    assert_eq!(
        (p.z, p.p_value, p.absolute_lift_ci, p.relative_lift_ci),
        (None, None, None, None)
    );
}

#[test]
fn stats_report_other_count_inconsistencies() {
    let mut odd = arm("b", 100, 10);
    odd.clicks = 500; // > 300 exposures
    odd.users_clicked = 120; // > 100 users exposed
    odd.exposures = 90; // < 100 users exposed
    odd.revenue_sumsq = 1.0; // < 200²/100
    let arms = [arm("control", 1000, 50), odd];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    let found = codes(&r);
    for code in [
        WarningCode::ClicksExceedExposures,
        WarningCode::ClickedWithoutExposure,
        WarningCode::UsersExceedExposures,
        WarningCode::InconsistentRevenueSumsq,
    ] {
        assert!(found.contains(&code), "{code:?} missing from {found:?}");
    }
    assert_eq!(r.arms[1].revenue_per_user_sd, None);
    assert_eq!(r.comparisons[0].ctr.z, None);
    assert_eq!(r.comparisons[0].revenue_per_user.t, None);
}

#[test]
fn stats_report_skips_unnamed_arm() {
    let arms = [
        arm("control", 1000, 50),
        arm("", 10, 1),
        arm("  ", 10, 1),
        arm("b", 1000, 55),
    ];
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert_all_finite(&r);
    assert_eq!(
        r.arms.iter().map(|a| a.arm.as_str()).collect::<Vec<_>>(),
        ["control", "b"]
    );
    assert_eq!(codes(&r), vec![WarningCode::UnnamedArmSkipped; 2]);
    assert_eq!(r.srm.unwrap().arms.len(), 2);
}

#[test]
fn stats_report_planned_split() {
    let arms = [
        arm("control", 5000, 250),
        arm("b", 5000, 260),
        arm("c", 10_000, 520),
    ];
    let plan = [
        ("control".to_string(), 1.0),
        ("b".to_string(), 1.0),
        ("c".to_string(), 2.0),
    ];
    let r = campaign_report(&arms, None, Some(&plan), 0.05).unwrap();
    let srm = r.srm.as_ref().unwrap();
    assert_eq!(srm.split, SplitSource::Planned);
    assert_eq!(
        srm.arms
            .iter()
            .map(|a| a.expected_fraction)
            .collect::<Vec<_>>(),
        [0.25, 0.25, 0.5]
    );
    assert_eq!(srm.chi2, Some(0.0));
    assert!(!srm.mismatch);
    assert_eq!(srm.df, 2);

    // The same data against an equal split is a mismatch.
    let r = campaign_report(&arms, None, None, 0.05).unwrap();
    assert!(r.srm.unwrap().mismatch);

    // A planned arm without data counts as 0 users.
    let plan4 = [plan.as_slice(), &[("d".to_string(), 1.0)]].concat();
    let r = campaign_report(&arms, None, Some(&plan4), 0.05).unwrap();
    assert!(codes(&r).contains(&WarningCode::PlannedArmMissing));
    let srm = r.srm.unwrap();
    assert_eq!(srm.arms[3].observed_users, 0);
    assert!(srm.mismatch);

    // Plans that cannot be right are errors.
    let partial = [("control".to_string(), 1.0), ("b".to_string(), 1.0)];
    assert!(matches!(
        campaign_report(&arms, None, Some(&partial), 0.05),
        Err(CoreError::InvalidParameter(m)) if m.contains("'c'")
    ));
    let zero = [
        ("control".to_string(), 1.0),
        ("b".to_string(), 0.0),
        ("c".to_string(), 1.0),
    ];
    assert!(campaign_report(&arms, None, Some(&zero), 0.05).is_err());
    let dup = [plan.as_slice(), &[("b".to_string(), 1.0)]].concat();
    assert!(campaign_report(&arms, None, Some(&dup), 0.05).is_err());
}

#[test]
fn stats_report_cost_metrics() {
    let mut with_cost = arm("control", 1000, 50); // revenue 1000
    with_cost.cost = Some(400.0);
    let mut zero_cost = arm("b", 1000, 50);
    zero_cost.cost = Some(0.0);
    let mut negative = arm("c", 1000, 50);
    negative.cost = Some(-1.0);
    let r = campaign_report(
        &[with_cost, zero_cost, negative, arm("d", 1000, 50)],
        None,
        None,
        0.05,
    )
    .unwrap();
    assert_all_finite(&r);
    assert_eq!((r.arms[0].roi, r.arms[0].roas), (Some(1.5), Some(2.5)));
    for a in &r.arms[1..] {
        assert_eq!((a.roi, a.roas), (None, None), "{}", a.arm);
    }
    assert_eq!(codes(&r), vec![WarningCode::NegativeCost]);
}

#[test]
fn stats_report_rejects_bad_input() {
    let arms = [arm("control", 1000, 50), arm("b", 1000, 55)];
    for alpha in [0.0, 1.0, -0.1, f64::NAN] {
        assert!(matches!(
            campaign_report(&arms, None, None, alpha),
            Err(CoreError::InvalidParameter(_))
        ));
    }
    let dup = [arm("control", 1000, 50), arm("control", 1000, 55)];
    assert!(matches!(
        campaign_report(&dup, None, None, 0.05),
        Err(CoreError::InvalidData(_))
    ));
    let mut nan = arm("b", 1000, 55);
    nan.revenue = f64::NAN;
    assert!(campaign_report(&[arm("control", 10, 1), nan.clone()], None, None, 0.05).is_err());
    nan.revenue = 1.0;
    nan.revenue_sumsq = -1.0;
    assert!(campaign_report(&[arm("control", 10, 1), nan.clone()], None, None, 0.05).is_err());
    nan.revenue_sumsq = 1.0;
    nan.cost = Some(f64::INFINITY);
    assert!(campaign_report(&[arm("control", 10, 1), nan], None, None, 0.05).is_err());
}

#[test]
fn stats_report_empty_and_single_arm() {
    let r = campaign_report(&[], None, None, 0.05).unwrap();
    assert!(r.arms.is_empty() && r.comparisons.is_empty() && r.srm.is_none());
    assert!(r.data_warnings.is_empty());
    let r = campaign_report(&[arm("control", 100, 5)], None, None, 0.05).unwrap();
    assert_all_finite(&r);
    assert!(r.comparisons.is_empty());
    assert!(r.srm.is_none());
}

#[test]
fn stats_report_extreme_counts_do_not_panic() {
    let huge = ArmAggregate {
        arm: "b".into(),
        users_exposed: u64::MAX,
        exposures: u64::MAX,
        clicks: u64::MAX,
        users_clicked: u64::MAX,
        conversions: u64::MAX,
        users_converted: u64::MAX,
        revenue: f64::MAX,
        revenue_sumsq: f64::MAX,
        cost: Some(f64::MIN_POSITIVE),
        ctr_moments: Some(RatioMoments {
            n: u64::MAX,
            num_sum: f64::MAX,
            den_sum: f64::MAX,
            num_sumsq: f64::MAX,
            den_sumsq: f64::MAX,
            cross_sum: f64::MAX,
        }),
        ..Default::default()
    };
    let tiny = ArmAggregate {
        arm: "control".into(),
        users_exposed: 1,
        exposures: 0,
        ..huge.clone()
    };
    let r = campaign_report(&[tiny, huge], None, None, 1e-300).unwrap();
    assert_all_finite(&r);
}

#[test]
fn stats_arm_aggregate_deserialises_without_cost() {
    let a: ArmAggregate = serde_json::from_str(
        r#"{"arm":"b","users_exposed":3,"exposures":4,"clicks":1,"users_clicked":1,
            "conversions":1,"users_converted":1,"revenue":9.5,"revenue_sumsq":90.25}"#,
    )
    .unwrap();
    assert_eq!(a.cost, None);
    assert_eq!(a.ctr_moments, None);
}

/// Clicks concentrated on few users: per exposure the lift looks significant, per user (the
/// unit that was randomised) it is not; the report says which test it used.
#[test]
fn stats_report_ctr_by_user_is_more_cautious_than_by_exposure() {
    // 400 users per arm, 10 exposures each; in the treatment 48 users click 5 times, in the
    // control 50 users click 4 times: 240 vs 200 clicks per 4,000 exposures, 6% vs 5%.
    let arm_with = |name: &str, clickers: u64, clicks_each: f64| {
        let pairs = (0..400u64).map(|i| (if i < clickers { clicks_each } else { 0.0 }, 10.0));
        let m = RatioMoments::from_pairs(pairs);
        ArmAggregate {
            arm: name.into(),
            users_exposed: 400,
            exposures: 4000,
            clicks: m.num_sum as u64,
            users_clicked: clickers,
            conversions: 0,
            users_converted: 0,
            revenue: 0.0,
            revenue_sumsq: 0.0,
            cost: None,
            ctr_moments: Some(m),
            ..Default::default()
        }
    };
    let (t, c) = (arm_with("b", 48, 5.0), arm_with("control", 50, 4.0));
    let by_user = campaign_report(&[c.clone(), t.clone()], None, None, 0.05).unwrap();
    let strip = |a: &ArmAggregate| ArmAggregate {
        ctr_moments: None,
        ..a.clone()
    };
    let by_exposure = campaign_report(&[strip(&c), strip(&t)], None, None, 0.05).unwrap();
    let (u, e) = (&by_user.comparisons[0].ctr, &by_exposure.comparisons[0].ctr);
    assert_eq!(u.test, ProportionTest::DeltaMethod);
    assert_eq!(e.test, ProportionTest::PooledZ);
    assert_eq!(u.treatment_rate, e.treatment_rate);
    assert_eq!(u.absolute_lift, e.absolute_lift);
    assert!(
        u.p_value.unwrap() > 2.0 * e.p_value.unwrap(),
        "{u:?} vs {e:?}"
    );
    let width = |ci: Option<Interval>| ci.map(|i| i.high - i.low).unwrap();
    assert!(width(u.absolute_lift_ci) > 1.5 * width(e.absolute_lift_ci));
    assert_all_finite(&by_user);
    // The JSON names the test.
    let json = serde_json::to_value(&by_user).unwrap();
    assert_eq!(json["comparisons"][0]["ctr"]["test"], "delta_method");
    assert_eq!(
        json["comparisons"][0]["conversion_rate"]["test"],
        "pooled_z"
    );
}
