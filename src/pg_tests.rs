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
            "SELECT count(*) FROM cf_recommend(1, 50) r JOIN persona.ratings x ON x.item_id = \
             r.item_id AND x.user_id = 1",
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
        // ... to the same predictions as a fresh baseline model trained on the same rows.
        Spi::run("SELECT cf_train(algorithm => 'baseline', model => 'b')").unwrap();
        let fresh = Spi::get_one::<f32>("SELECT cf_predict(1, 2, 'b')")
            .unwrap()
            .unwrap();
        assert_eq!(after, fresh);
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

    #[pg_test]
    fn report_sentiment_scores_each_feedback_text_once() {
        Spi::run("SELECT persona.load_demo()").unwrap();
        let report = || {
            Spi::get_one::<pgrx::JsonB>("SELECT campaign_metrics('spring_outdoor')")
                .unwrap()
                .unwrap()
                .0["satisfaction"]
                .clone()
        };
        let first = report();
        if first["mean_sentiment"].is_null() {
            eprintln!("SKIPPED: no sentiment model here: {first}");
            return;
        }
        let texts = first["feedback_count"].as_u64().unwrap();
        let m = crate::text_store::model(&crate::settings::sentiment_model());
        let (hits, misses) = {
            let memo = m.memo.borrow();
            (memo.hits, memo.misses)
        };
        assert!(misses > 0 && misses <= texts, "{misses} of {texts}");
        // The second report scores nothing again and gives the same mean.
        let second = report();
        let memo = m.memo.borrow();
        assert_eq!(memo.misses, misses, "a text was scored twice");
        assert_eq!(memo.hits, hits + texts);
        assert_eq!(second["mean_sentiment"], first["mean_sentiment"]);
    }

    #[pg_test(error = "campaign \"nope\" does not exist")]
    fn unknown_campaign_is_an_error() {
        Spi::run("SELECT campaign_metrics('nope')").unwrap();
    }

    #[pg_test(error = "model \"missing\" does not exist")]
    fn unknown_model_is_an_error() {
        Spi::run("SELECT cf_predict(1, 1, 'missing')").unwrap();
    }

    // This test server does not preload pg_persona: there is no inference worker to ask for.
    #[pg_test(
        error = "persona.inference is \"worker\" but the pg_persona inference worker does not exist"
    )]
    fn inference_worker_without_preload_is_an_error() {
        Spi::run("SET persona.inference = 'worker'").unwrap();
        Spi::run("SELECT bert_score('a fine day')").unwrap();
    }

    // Without the worker, auto runs text models in the backend, and the worker's views are empty.
    #[pg_test]
    fn inference_auto_without_preload_runs_in_the_backend() {
        let n = Spi::get_one::<i64>("SELECT count(*) FROM persona.inference_worker")
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        let workers = Spi::get_one::<i64>(
            "SELECT count(*) FROM persona.text_cache WHERE holder IN ('worker', 'backend')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(workers, 0);
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

    // ---- Text models (bert_*): need ONNX Runtime and the default models (scripts/setup.sh).

    const TINY_ENCODER: &[u8] =
        include_bytes!("../crates/persona-core/tests/data/text/encoder.onnx");
    const TINY_CLASSIFIER: &[u8] =
        include_bytes!("../crates/persona-core/tests/data/text/classifier.onnx");
    const TINY_TOKENIZER: &str =
        include_str!("../crates/persona-core/tests/data/text/tokenizer.json");

    fn register_tiny(name: &str, onnx: &[u8], task: &str, options: &str) -> serde_json::Value {
        Spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT bert_register_model($1, $2, $3, $4, $5::jsonb)",
            &[
                name.into(),
                onnx.into(),
                TINY_TOKENIZER.into(),
                task.into(),
                options.into(),
            ],
        )
        .unwrap()
        .unwrap()
        .0
    }

    #[pg_test]
    fn bert_default_models_embed_and_score() {
        let models = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(name ORDER BY name) FROM persona.bert_models",
        )
        .unwrap()
        .unwrap();
        assert_eq!(models, ["minilm", "sentiment"]);
        let e = Spi::get_one::<Vec<f32>>("SELECT bert_embed('The movie was great')")
            .unwrap()
            .unwrap();
        assert_eq!(e.len(), 384);
        let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        let (pos, neg) = Spi::get_two::<f32, f32>(
            "SELECT bert_score('A wonderful, moving film. I loved it.'), \
                    bert_score('A boring, awful mess. I hated it.')",
        )
        .unwrap();
        let (pos, neg) = (pos.unwrap(), neg.unwrap());
        assert!(pos > 0.5 && neg < 0.5, "{pos} {neg}");
        let c = Spi::get_one::<pgrx::JsonB>("SELECT bert_classify('A wonderful film')")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(c["label"], "positive");
    }

    #[pg_test]
    fn bert_shipped_head_is_valid() {
        let (spec, about) =
            crate::bert::defaults::shipped_sentiment().expect("a shipped sentiment head");
        // MiniLM's token states are 384 wide; the head reads them through the spec's pooling.
        let dim = spec.pooling.dim(384);
        spec.head.expect("a head").validate(Some(dim)).unwrap();
        assert!(about["sst2_dev_accuracy"].as_f64().is_some(), "{about}");
    }

    #[pg_test]
    fn bert_batch_equals_single() {
        let texts = [
            "good",
            "",
            "A rather long review that goes on and on about the film and its many flaws.",
            "bad",
        ];
        let batch = Spi::get_one_with_args::<Vec<Option<f32>>>(
            "SELECT bert_score($1::text[])",
            &[texts.to_vec().into()],
        )
        .unwrap()
        .unwrap();
        for (t, b) in texts.iter().zip(&batch) {
            let single = Spi::get_one_with_args::<f32>("SELECT bert_score($1)", &[(*t).into()])
                .unwrap()
                .unwrap();
            assert!(
                (single - b.unwrap()).abs() < 1e-5,
                "{t:?}: {single} vs {b:?}"
            );
        }
    }

    #[pg_test]
    fn bert_register_classify_and_replace() {
        let r = register_tiny("tiny", TINY_ENCODER, "embedding", r#"{"max_length": 16}"#);
        assert_eq!(r["dim"], 8);
        assert_eq!(r["inputs"].as_array().unwrap().len(), 3);
        let r = register_tiny(
            "tiny_cls",
            TINY_CLASSIFIER,
            "classification",
            r#"{"max_length": 16, "labels": ["neg", "neutral", "pos"], "positive_label": "pos"}"#,
        );
        assert_eq!(r["positive_label"], "pos");
        assert_eq!(r["inputs"].as_array().unwrap().len(), 2); // no token_type_ids
        let p = Spi::get_one::<f32>("SELECT bert_score('good', 'tiny_cls')")
            .unwrap()
            .unwrap();
        let c = Spi::get_one::<pgrx::JsonB>("SELECT bert_classify('good', 'tiny_cls')")
            .unwrap()
            .unwrap()
            .0;
        let p_pos = c["scores"]["pos"].as_f64().unwrap() as f32;
        assert!((p - p_pos).abs() < 1e-6);
        // Replacing the model is seen at once by this backend's cache.
        register_tiny(
            "tiny_cls",
            TINY_CLASSIFIER,
            "classification",
            concat!(
                r#"{"max_length": 16, "labels": ["neg", "neutral", "pos"], "#,
                r#""positive_label": "neg", "replace": true}"#
            ),
        );
        let p_neg = Spi::get_one::<f32>("SELECT bert_score('good', 'tiny_cls')")
            .unwrap()
            .unwrap();
        assert!((p_neg - c["scores"]["neg"].as_f64().unwrap() as f32).abs() < 1e-6);
    }

    #[pg_test]
    fn bert_train_classifier_registers_a_usable_model() {
        Spi::run(
            "CREATE TABLE reviews (body text, stars int); \
             INSERT INTO reviews \
             SELECT b, s FROM (VALUES \
               ('I loved this film, wonderful acting', 5), ('A great and moving story', 5), \
               ('Brilliant, funny and warm', 4), ('One of the best movies this year', 5), \
               ('Delightful from start to finish', 4), ('Superb cast and a clever plot', 5), \
               ('Terrible, a complete waste of time', 1), ('Boring and far too long', 2), \
               ('I hated every minute of it', 1), ('The worst film I have seen', 1), \
               ('Dull, lifeless and predictable', 2), ('An awful mess with bad acting', 1)) v(b, \
               s), \
               generate_series(1, 3);",
        )
        .unwrap();
        Spi::run("CREATE VIEW labelled AS SELECT body AS text, stars >= 4 AS label FROM reviews")
            .unwrap();
        let s = Spi::get_one::<pgrx::JsonB>(
            "SELECT bert_train_classifier('stars', 'labelled', options => '{\"holdout_fraction\": \
             0.25}')",
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(s["labels"], serde_json::json!(["false", "true"]));
        assert_eq!(s["positive_label"], "true");
        assert_eq!(s["holdout_rows"], 10); // 18 rows per label, 4.5 rounded up to 5 each
        assert!(s["holdout"]["accuracy"].as_f64().unwrap() >= 0.8, "{s}");
        assert!(s["holdout"]["roc_auc"].as_f64().is_some());
        let (good, bad) = Spi::get_two::<f32, f32>(
            "SELECT bert_score('a wonderful film', 'stars'), bert_score('an awful film', 'stars')",
        )
        .unwrap();
        assert!(good.unwrap() > bad.unwrap());
    }

    #[pg_test(
        error = "the label column \"label\" of public.one_class holds one class only (\"yes\")"
    )]
    fn bert_one_class_is_an_error() {
        Spi::run(
            "CREATE TABLE one_class AS SELECT 'some text ' || i AS text, 'yes' AS label FROM \
                  generate_series(1, 10) i",
        )
        .unwrap();
        Spi::run("SELECT bert_train_classifier('c', 'one_class')").unwrap();
    }

    #[pg_test(error = "text model \"nope\" does not exist")]
    fn bert_missing_model_is_an_error() {
        Spi::run("SELECT bert_score('good', 'nope')").unwrap();
    }

    #[pg_test(
        error = "the ONNX graph has an unexpected input \"position_ids\"; supported inputs are input_ids, attention_mask and token_type_ids (graph inputs: input_ids (int64 [-1, -1]), attention_mask (int64 [-1, -1]), position_ids (int64 [-1, -1]))"
    )]
    fn bert_unexpected_graph_is_an_error() {
        register_tiny(
            "bad",
            include_bytes!("../crates/persona-core/tests/data/text/unexpected_input.onnx"),
            "embedding",
            r#"{"max_length": 16}"#,
        );
    }

    #[pg_test]
    fn bert_auto_device_falls_back_to_cpu() {
        Spi::run("SET persona.device = 'auto'").unwrap();
        let n = Spi::get_one::<i32>("SELECT array_length(bert_embed('hello'), 1)")
            .unwrap()
            .unwrap();
        assert_eq!(n, 384);
    }
}
