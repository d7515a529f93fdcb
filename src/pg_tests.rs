//! `#[pg_test]` tests: run inside a PostgreSQL backend by `cargo pgrx test`.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn demo_train_predict_recommend() {
        Spi::run("SELECT persona.load_demo()").unwrap();
        let n = Spi::get_one::<i64>("SELECT count(*) FROM persona.ratings")
            .unwrap()
            .unwrap();
        assert!(n > 2500, "{n} demo ratings");
        let summary = Spi::get_one::<pgrx::JsonB>("SELECT cf_train()")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(summary["version"], 1);
        assert_eq!(summary["algorithm"], "svdpp");
        let rmse = summary["holdout"]["rmse"].as_f64().unwrap();
        assert!(rmse > 0.3 && rmse < 1.1, "held-out RMSE {rmse}");
        let p = Spi::get_one::<f32>("SELECT cf_predict(1, 1)")
            .unwrap()
            .unwrap();
        assert!((1.0..=5.0).contains(&p), "{p}");
        let recs = Spi::get_one::<i64>("SELECT count(*) FROM cf_recommend(1, 7)")
            .unwrap()
            .unwrap();
        assert_eq!(recs, 7);
        // Recommendations exclude what the user rated.
        let seen = Spi::get_one::<i64>(
            "SELECT count(*) FROM cf_recommend(1, 50) r JOIN persona.ratings x ON x.item_id = r.item_id AND x.user_id = 1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(seen, 0);
    }

    #[pg_test]
    fn retraining_makes_a_new_version_and_deploy_rolls_back() {
        Spi::run("SELECT persona.load_demo(users => 60, items => 30)").unwrap();
        Spi::run("SELECT cf_train(algorithm => 'baseline', model => 'm')").unwrap();
        Spi::run("SELECT cf_train(algorithm => 'svd', model => 'm')").unwrap();
        let (v, algo) = Spi::get_two::<i32, String>(
            "SELECT active_version, algorithm FROM persona.cf_models WHERE model = 'm'",
        )
        .unwrap();
        assert_eq!((v, algo.as_deref()), (Some(2), Some("svd")));
        let before = Spi::get_one::<f32>("SELECT cf_predict(1, 2, 'm')")
            .unwrap()
            .unwrap();
        Spi::run("SELECT cf_deploy('m', 1)").unwrap();
        let (v, algo) = Spi::get_two::<i32, String>(
            "SELECT active_version, algorithm FROM persona.cf_models WHERE model = 'm'",
        )
        .unwrap();
        assert_eq!((v, algo.as_deref()), (Some(1), Some("baseline")));
        // The cache follows the deploy within the same transaction.
        let after = Spi::get_one::<f32>("SELECT cf_predict(1, 2, 'm')")
            .unwrap()
            .unwrap();
        let baseline = Spi::get_one::<f64>(
            "SELECT (SELECT avg(rating) FROM persona.ratings) IS NOT NULL::int::float8", // sanity: table readable
        )
        .unwrap();
        assert!(baseline.is_some());
        assert_ne!(before, after, "deploy switched the model");
    }

    #[pg_test]
    fn campaign_report_on_demo_data() {
        Spi::run("SELECT persona.load_demo()").unwrap();
        let r = Spi::get_one::<pgrx::JsonB>("SELECT campaign_metrics('spring_outdoor')")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(r["control_arm"], "control");
        let arms = r["arms"].as_array().unwrap();
        assert_eq!(arms.len(), 2);
        assert!(r["comparisons"].as_array().unwrap().len() == 1);
        assert!(r["srm"].is_object());
        let days = Spi::get_one::<i64>(
            "SELECT count(DISTINCT day) FROM campaign_metrics_daily('spring_outdoor')",
        )
        .unwrap()
        .unwrap();
        assert!((10..=16).contains(&days), "{days} days");
    }

    #[pg_test(error = "campaign \"nope\" does not exist")]
    fn unknown_campaign_is_an_error() {
        Spi::run("SELECT campaign_metrics('nope')").unwrap();
    }

    #[pg_test(error = "model \"missing\" does not exist")]
    fn unknown_model_is_an_error() {
        Spi::run("SELECT cf_predict(1, 1, 'missing')").unwrap();
    }

    #[pg_test]
    fn profile_has_segment_and_recommendations() {
        Spi::run("SELECT persona.load_demo()").unwrap();
        Spi::run("SELECT cf_train(algorithm => 'svd')").unwrap();
        let p = Spi::get_one::<pgrx::JsonB>("SELECT user_profile(1, as_of => '2026-05-01')")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(p["user_id"], 1);
        assert!(p["activity"]["ratings"].as_u64().unwrap() >= 5);
        assert!(p["segment"].is_string());
        assert_eq!(p["next"]["items"].as_array().unwrap().len(), 5);
    }
}
