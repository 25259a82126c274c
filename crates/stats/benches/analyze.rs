//! Analysing one experiment from aggregates: 3 arms x 10 metrics (mean,
//! proportion, ratio and CUPED), frequentist with Holm, sequential, and Bayesian.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_stats::{
    AnalysisRequest, Component, Correction, Engine, MeanStatistic, Metric, MetricStatistic,
    ProportionStatistic, RatioStatistic, RegressionStatistic, Settings, Variation, analyze,
    analyze_document,
};

fn statistic(metric: usize, arm: usize) -> MetricStatistic {
    let n = 10_000 + 37 * arm as u64;
    let nf = n as f64;
    let lift = 1.0 + 0.01 * arm as f64 + 0.001 * metric as f64;
    let mean = Component::Mean {
        sum: 5.0 * nf * lift,
        sum_squares: 34.0 * nf * lift,
    };
    match metric % 4 {
        0 => MetricStatistic::Mean(MeanStatistic {
            n,
            sum: 5.0 * nf * lift,
            sum_squares: 34.0 * nf * lift,
        }),
        1 => MetricStatistic::Proportion(ProportionStatistic {
            n,
            successes: (0.2 * nf * lift).round(),
        }),
        2 => MetricStatistic::Ratio(RatioStatistic {
            n,
            numerator: mean,
            denominator: Component::Mean {
                sum: 3.0 * nf,
                sum_squares: 12.0 * nf,
            },
            sum_products: 17.0 * nf * lift,
        }),
        _ => MetricStatistic::RegressionAdjusted(RegressionStatistic {
            n,
            post: mean,
            pre: Component::Mean {
                sum: 5.0 * nf,
                sum_squares: 34.0 * nf,
            },
            sum_products: 30.0 * nf,
        }),
    }
}

fn request(settings: Settings) -> AnalysisRequest {
    AnalysisRequest {
        settings,
        variations: (0..3)
            .map(|i| Variation {
                id: format!("v{i}"),
                weight: 1.0,
                units: 10_000 + 37 * i,
            })
            .collect(),
        metrics: (0..10)
            .map(|m| Metric {
                id: format!("metric_{m}"),
                inverse: false,
                prior: None,
                data: (0..3).map(|arm| statistic(m, arm)).collect(),
            })
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    let frequentist = request(Settings {
        correction: Correction::Holm,
        ..Settings::default()
    });
    let sequential = request(Settings {
        sequential: true,
        ..Settings::default()
    });
    let bayesian = request(Settings {
        engine: Engine::Bayesian,
        ..Settings::default()
    });
    for r in [&frequentist, &sequential, &bayesian] {
        assert!(r.validate().is_ok());
    }
    c.bench_function("analyze 3 arms x 10 metrics, frequentist + holm", |b| {
        b.iter(|| analyze(black_box(&frequentist)))
    });
    c.bench_function("analyze 3 arms x 10 metrics, sequential", |b| {
        b.iter(|| analyze(black_box(&sequential)))
    });
    c.bench_function("analyze 3 arms x 10 metrics, bayesian", |b| {
        b.iter(|| analyze(black_box(&bayesian)))
    });
    let document = serde_json::to_string(&frequentist).unwrap_or_default();
    c.bench_function(
        "analyze_document 3 arms x 10 metrics (parse + analyze + encode)",
        |b| b.iter(|| analyze_document(black_box(&document))),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
