"""Sequence identification from DICOM metadata: realistic names of three vendors, physics, traps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from neuronav.ingest.model import Inventory, PatientIdentity, ScannedStudy, Series, SeriesMetadata
from neuronav.series import Sequence, SequenceVerdict, identify_inventory, identify_sequence

S = Sequence

DIFF = ("DERIVED", "PRIMARY", "DIFFUSION")
ORIG = ("ORIGINAL", "PRIMARY", "M", "ND")


@dataclass(frozen=True)
class Case:
    desc: str
    expected: Sequence
    protocol: str = ""
    tr: float | None = None
    te: float | None = None
    ti: float | None = None
    agent: str = ""
    image_type: tuple[str, ...] = ()
    b: float | None = None
    seq_name: str = ""
    scanning: str = ""
    vendor: str = ""

    def meta(self) -> SeriesMetadata:
        return SeriesMetadata(
            modality="MR",
            manufacturer=self.vendor,
            series_description=self.desc,
            protocol_name=self.protocol,
            repetition_time=self.tr,
            echo_time=self.te,
            inversion_time=self.ti,
            contrast_bolus_agent=self.agent,
            image_type=self.image_type,
            diffusion_b_value=self.b,
            sequence_name=self.seq_name,
            scanning_sequence=self.scanning,
        )


SIEMENS = "SIEMENS"
GE = "GE MEDICAL SYSTEMS"
PHILIPS = "Philips Medical Systems"

CASES = [
    # --- Siemens
    Case(
        "t1_mprage_sag_p2_iso",
        S.T1,
        "t1_mprage_sag_p2_iso",
        2300,
        2.32,
        900,
        image_type=ORIG,
        seq_name="*tfl3d1_16ns",
        scanning="GR\\IR",
        vendor=SIEMENS,
    ),
    Case(
        "t1_mprage_sag_p2_iso",
        S.T1C,
        "t1_mprage_sag_p2_iso",
        2300,
        2.32,
        900,
        agent="Gadovist",
        seq_name="*tfl3d1_16ns",
        vendor=SIEMENS,
    ),
    Case("t1_mprage_sag_p2_iso_post", S.T1C, "t1_mprage_sag_p2_iso_post", 2300, 2.32, 900, vendor=SIEMENS),
    Case("t1_se_tra", S.T1, "t1_se_tra", 550, 9.5, scanning="SE", vendor=SIEMENS),
    Case("t1_se_tra_KM", S.T1C, "t1_se_tra_KM", 550, 9.5, vendor=SIEMENS),
    Case("t1_fl3d_tra_fs_post", S.T1C, "t1_fl3d_tra_fs_post", 7.6, 2.4, vendor=SIEMENS),
    Case("t1_tse_tra+C", S.T1C, "", 600, 12, vendor=SIEMENS),
    Case("t2_tse_tra", S.T2, "t2_tse_tra", 6000, 95, seq_name="*tse2d1_15", vendor=SIEMENS),
    Case(
        "t2_tirm_tra_dark-fluid",
        S.FLAIR,
        "t2_tirm_tra_dark-fluid",
        9000,
        81,
        2500,
        seq_name="*tir2d1_16",
        vendor=SIEMENS,
    ),
    Case("t2_space_dark-fluid_sag_p3_iso", S.FLAIR, "", 5000, 387, 1800, seq_name="*spcir_282ns", vendor=SIEMENS),
    Case(
        "ep2d_diff_3scan_trace_p2_TRACEW",
        S.DWI,
        "ep2d_diff_3scan_trace_p2",
        5200,
        89,
        image_type=(*DIFF, "TRACEW", "ND"),
        b=1000,
        seq_name="*ep_b1000t",
        scanning="EP",
        vendor=SIEMENS,
    ),
    Case(
        "ep2d_diff_3scan_trace_p2_ADC",
        S.ADC,
        "ep2d_diff_3scan_trace_p2",
        5200,
        89,
        image_type=(*DIFF, "ADC", "ND"),
        vendor=SIEMENS,
    ),
    Case(
        "SWI_Images",
        S.SWI,
        "t2_swi_tra_p2_1.5mm",
        27,
        20,
        image_type=("DERIVED", "PRIMARY", "M", "SWI", "NORM"),
        seq_name="*swi3d1r",
        vendor=SIEMENS,
    ),
    Case("Mag_Images", S.SWI, "t2_swi_tra_p2_1.5mm", 27, 20, image_type=ORIG, seq_name="*swi3d1r", vendor=SIEMENS),
    Case(
        "Pha_Images",
        S.OTHER,
        "t2_swi_tra_p2_1.5mm",
        27,
        20,
        image_type=("ORIGINAL", "PRIMARY", "P", "ND"),
        seq_name="*swi3d1r",
        vendor=SIEMENS,
    ),
    Case("AAHead_Scout_64ch-head-coil", S.OTHER, "AAHead_Scout", 3.15, 1.37, vendor=SIEMENS),
    Case("localizer", S.OTHER, "localizer", 8.6, 4.0, seq_name="*fl2d1", vendor=SIEMENS),
    Case("t2_tirm_cor", S.OTHER, "t2_tirm_cor", 4000, 40, 150, vendor=SIEMENS),  # TI 150 ms: a STIR
    Case("ep2d_perf", S.OTHER, "ep2d_perf", 1500, 30, agent="Gadovist", vendor=SIEMENS),
    Case("tof_fl3d_tra_multi-slab", S.OTHER, "", 22, 3.6, vendor=SIEMENS),
    Case("t2_fl2d_tra_hemo", S.OTHER, "", 600, 20, vendor=SIEMENS),
    Case("t1_tirm_tra", S.T1, "t1_tirm_tra", vendor=SIEMENS),  # T1 TIRM is a T1 IR, not a FLAIR
    Case("ep2d_diff_mddw_30_p2_ColFA", S.OTHER, "ep2d_diff_mddw_30_p2", image_type=(*DIFF, "FA", "ND"), vendor=SIEMENS),
    Case("mIP_Images(SW)", S.SWI, "t2_swi_tra_p2_1.5mm", 27, 20, vendor=SIEMENS),
    # --- GE
    Case("Sag 3D BRAVO", S.T1, "BRAIN TUMOR", 8.2, 3.2, 450, vendor=GE),
    Case("Ax 3D BRAVO +C", S.T1C, "BRAIN TUMOR", 8.2, 3.2, 450, agent="MULTIHANCE", vendor=GE),
    Case("Ax T1 FLAIR", S.T1, "BRAIN TUMOR", 2000, 10, 800, vendor=GE),  # GE T1 FLAIR is a T1
    Case("Ax T1 FLAIR POST", S.T1C, "", 2000, 10, 800, agent="GADAVIST", vendor=GE),
    Case("Sag FLAIR", S.T1, "", 2000, 10, 800, vendor=GE),  # name says FLAIR, physics says T1 IR
    Case("Ax T2 FLAIR", S.FLAIR, "", 9000, 120, 2250, vendor=GE),
    Case("Sag CUBE FLAIR", S.FLAIR, "", 6000, 130, 1800, vendor=GE),
    Case("Ax T2 FSE", S.T2, "", 4500, 100, vendor=GE),
    Case("Ax T2 PROPELLER", S.T2, "", 5000, 110, vendor=GE),
    Case("AX DWI", S.DWI, "", 6000, 80, b=1000, scanning="EP", vendor=GE),
    Case(
        "Apparent Diffusion Coefficient (mm2/s)",
        S.ADC,
        "",
        6000,
        80,
        image_type=("DERIVED", "SECONDARY", "ADC"),
        b=1000,
        vendor=GE,
    ),
    Case("Ax SWAN", S.SWI, "", 40, 25, vendor=GE),
    Case("3-Plane Loc", S.OTHER, "", 5.1, 1.6, vendor=GE),
    Case("ASSET Calibration", S.OTHER, "", 150, 1.6, vendor=GE),
    Case("Ax T1 SE +C", S.T1C, "", 500, 10, vendor=GE),
    Case("AX FSPGR 3D POST", S.T1C, "", 7.0, 2.8, vendor=GE),
    Case("Ax T2* GRE", S.OTHER, "", 650, 15, vendor=GE),
    Case("Sag T1 SE", S.T1, "BRAIN +C", 500, 10, vendor=GE),  # exam-level protocol: its '+C' is ignored
    Case("Ax T1 SE W/O", S.T1, "", 500, 10, vendor=GE),
    # --- Philips
    Case("T1W_3D_TFE", S.T1, "WIP T1W_3D_TFE", 8.1, 3.7, vendor=PHILIPS),
    Case("sT1W_3D_TFE_Gd", S.T1C, "", 8.1, 3.7, vendor=PHILIPS),
    Case("T1W_3D_TFE +Gd", S.T1C, "", 8.1, 3.7, agent="Dotarem", vendor=PHILIPS),
    Case("T1W_SE_CLEAR", S.T1, "", 550, 15, vendor=PHILIPS),
    Case("T1W_SE mdc", S.T1C, "", 550, 15, vendor=PHILIPS),
    Case("T2W_TSE", S.T2, "", 3000, 80, vendor=PHILIPS),
    Case("T2W_FLAIR", S.FLAIR, "", 11000, 125, 2800, vendor=PHILIPS),
    Case("VISTA_FLAIR", S.FLAIR, "", 4800, 320, 1650, vendor=PHILIPS),
    Case("DWI_SENSE", S.DWI, "", 3000, 70, b=1000, vendor=PHILIPS),
    Case("dADC", S.ADC, "", 3000, 70, image_type=("DERIVED", "PRIMARY", "ADC", "ADC"), vendor=PHILIPS),
    Case("SWIp", S.SWI, "", 31, 7.2, vendor=PHILIPS),
    Case("SmartBrain_SURVEY", S.OTHER, "", 11, 4.6, vendor=PHILIPS),
    Case("PD_TSE", S.OTHER, "", 3000, 15, vendor=PHILIPS),
    # --- names missing: physics alone
    Case("", S.FLAIR, "", 9000, 90, 2500),
    Case("", S.T1, "", 500, 12),
    Case("", S.T1C, "", 500, 12, agent="Gadobutrol"),
    Case("", S.T2, "", 5000, 100),
    Case("", S.DWI, "", 5000, 90, b=1000, scanning="EP"),
    Case("", S.OTHER),
    # --- tokenisation traps
    Case("T1 SE sequence axial", S.T1, "", 500, 10),  # 'ce' inside 'sequence' is not contrast
    Case("T1 SE W/ FS", S.T1, "", 500, 10),  # with fat saturation, not with contrast
    Case("Brain T1 w/o contrast", S.T1, "", 500, 10),
]


def _id(case: Case) -> str:
    return f"{case.desc or '<none>'}->{case.expected.value}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_identifies_sequence(case: Case) -> None:
    verdict = identify_sequence(case.meta())
    assert verdict.sequence is case.expected, verdict.reasons
    assert 0.0 < verdict.confidence <= 1.0
    assert verdict.reasons, "every verdict says why"
    if case.desc:
        assert any(repr(case.desc) in r for r in verdict.reasons), verdict.reasons


def test_table_is_broad() -> None:
    vendors = {c.vendor for c in CASES}
    assert len(CASES) >= 40 and {SIEMENS, GE, PHILIPS} <= vendors
    assert {c.expected for c in CASES} == set(Sequence)


def test_ge_t1_flair_is_t1_and_says_why() -> None:
    v = identify_sequence(Case("Ax T1 FLAIR", S.T1, tr=2000, te=10, ti=800).meta())
    assert v.sequence is S.T1
    assert v.confidence >= 0.9  # name and physics agree
    assert any("T1 FLAIR" in r for r in v.reasons)
    assert any("TI 800 ms" in r for r in v.reasons)


def test_flair_name_overruled_by_t1_physics() -> None:
    v = identify_sequence(Case("Sag FLAIR", S.T1, tr=2000, te=10, ti=800).meta())
    assert v.sequence is S.T1
    assert 0.5 < v.confidence < 0.9
    assert any("overrules" in r for r in v.reasons)


def test_mprage_with_contrast_agent_is_t1c_naming_the_agent() -> None:
    v = identify_sequence(Case("t1_mprage_sag_p2_iso", S.T1C, tr=2300, te=2.3, ti=900, agent="Gadobutrol").meta())
    assert v.sequence is S.T1C
    assert any("ContrastBolusAgent 'Gadobutrol' present" in r for r in v.reasons)


@pytest.mark.parametrize("agent", ["", "NONE", "no", " - "])
def test_empty_or_negative_agent_is_not_contrast(agent: str) -> None:
    v = identify_sequence(Case("t1_mprage_sag_p2_iso", S.T1, tr=2300, te=2.3, ti=900, agent=agent).meta())
    assert v.sequence is S.T1


def test_flair_physics_reason_quotes_timing() -> None:
    v = identify_sequence(Case("t2_tirm_tra_dark-fluid", S.FLAIR, tr=9000, te=81, ti=2500).meta())
    assert any("TI 2500 ms with TR 9000 ms: fluid-attenuated" in r for r in v.reasons)
    assert any("'dark fluid'" in r for r in v.reasons)


def test_long_ti_overrules_a_t2_label() -> None:
    v = identify_sequence(Case("Ax T2", S.FLAIR, tr=9000, te=100, ti=2500).meta())
    assert v.sequence is S.FLAIR


def test_pre_contrast_name_beats_agent_tag_with_lower_confidence() -> None:
    tagged = identify_sequence(Case("Ax T1 SE pre", S.T1, tr=500, te=10, agent="Gadavist").meta())
    clean = identify_sequence(Case("Ax T1 SE pre", S.T1, tr=500, te=10).meta())
    assert tagged.sequence is S.T1 and clean.sequence is S.T1
    assert tagged.confidence < clean.confidence
    assert any("ContrastBolusAgent" in r for r in tagged.reasons)


def test_confidence_orders_agreement_over_one_source_over_guess() -> None:
    both = identify_sequence(Case("t2_tse_tra", S.T2, tr=6000, te=95).meta()).confidence
    name_only = identify_sequence(Case("t2_tse_tra", S.T2).meta()).confidence
    physics_only = identify_sequence(Case("", S.T2, tr=6000, te=95).meta()).confidence
    nothing = identify_sequence(Case("", S.OTHER).meta()).confidence
    assert both > name_only > physics_only > nothing
    assert both >= 0.9 and nothing <= 0.3


def test_name_and_physics_disagreeing_lowers_confidence() -> None:
    agree = identify_sequence(Case("t1_se_tra", S.T1, tr=500, te=10).meta())
    disagree = identify_sequence(Case("t1_se_tra", S.T1, tr=6000, te=100).meta())
    assert disagree.sequence is S.T1
    assert disagree.confidence < agree.confidence - 0.2
    assert any("disagrees" in r for r in disagree.reasons)


def test_protocol_disagreeing_with_description_is_reported() -> None:
    v = identify_sequence(Case("t2_tse_tra", S.T2, protocol="t1_se_tra", tr=6000, te=95).meta())
    assert v.sequence is S.T2
    assert any("ProtocolName 't1_se_tra'" in r and "more specific" in r for r in v.reasons)


def test_non_mr_modality_is_other() -> None:
    v = identify_sequence(SeriesMetadata(modality="CT", series_description="T1 axial"))
    assert v.sequence is S.OTHER and v.confidence > 0.9
    assert "Modality 'CT' is not MR" in v.reasons[0]


def test_nothing_known_is_other_with_low_confidence_and_a_reason() -> None:
    v = identify_sequence(SeriesMetadata(modality="MR", series_description="Series 5"))
    assert v.sequence is S.OTHER and v.confidence <= 0.3
    assert "identifies the sequence" in v.reasons[0]


def test_verdict_validates_and_serialises() -> None:
    with pytest.raises(ValueError, match="confidence"):
        SequenceVerdict(S.T1, 1.5, ("x",))
    with pytest.raises(ValueError, match="reason"):
        SequenceVerdict(S.T1, 0.5, ())
    d = identify_sequence(Case("Ax T2 FSE", S.T2, tr=4500, te=100).meta()).to_dict()
    assert d["sequence"] == "T2" and isinstance(d["reasons"], list)
    assert Sequence("T1c") is S.T1C and S.OTHER == "other"


def test_identify_inventory_fills_every_series() -> None:
    inv = Inventory()
    for k, uid in enumerate(["1.2.3", "1.2.4"]):
        study = ScannedStudy(study_instance_uid=uid, patient=PatientIdentity())
        for j, case in enumerate(CASES[k * 5 : k * 5 + 5]):
            s_uid = f"{uid}.{j}"
            study.series[s_uid] = Series(s_uid, uid, case.meta())
        inv.studies[uid] = study
    identify_inventory(inv)
    assert len(inv.all_series) == 10
    for series, case in zip(inv.all_series, CASES[:10], strict=True):
        assert isinstance(series.sequence, SequenceVerdict)
        assert series.sequence.sequence is case.expected


def test_flair_without_ti_is_not_penalised_by_t2_timing() -> None:
    v = identify_sequence(Case("Ax T2 FLAIR", S.FLAIR, tr=9000, te=120).meta())
    assert v.sequence is S.FLAIR and v.confidence >= 0.8
    assert not any("disagrees" in r for r in v.reasons)


def test_unrelated_physics_does_not_confirm_other() -> None:
    v = identify_sequence(Case("ep2d_perf", S.OTHER, tr=1500, te=30, agent="Gadovist").meta())
    assert v.sequence is S.OTHER and v.confidence < 0.9
    assert not any("proton-density" in r for r in v.reasons)


def test_reasons_show_contrast_marks_as_written() -> None:
    v = identify_sequence(Case("Ax T1 SE +C", S.T1C, tr=500, te=10).meta())
    assert any("contains '+C': post-contrast" in r for r in v.reasons)
