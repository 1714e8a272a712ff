"""The pages' words in Simplified Chinese (the default) and English, and dates in each
language's local form. Item names come from the catalogue as written there (one
language today); everything the pages themselves say is in :data:`TEXTS`."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
# The centre's local time: China keeps UTC+8 all year (no daylight saving).
LOCAL = timezone(timedelta(hours=8), "CST")

TEXTS: dict[str, tuple[str, str]] = {
    "app": ("一门受理", "One-door service"),
    "window": ("窗口受理", "Window"),
    "my": ("办件查询", "Check my case"),
    "language": ("语言", "Language"),
    "switch_to": ("English", "中文"),
    "skip": ("跳到主要内容", "Skip to main content"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出登录", "Sign out"),
    "account": ("账号", "Account name"),
    "password": ("密码", "Password"),
    "signed_in_as": ("当前登录", "Signed in as"),
    "window_no": ("窗口", "window"),
    "not_clerk": (
        "该账号不是窗口工作人员，无法使用窗口页面。",
        "This account is not a window clerk's; the window page is for clerks.",
    ),
    "signed_out": ("登录已失效，请重新登录。", "Your sign-in has ended; please sign in again."),
    "search_items": ("查找事项", "Find an item"),
    "search_hint": ("事项名称、编码或关键词", "Item name, code or keyword"),
    "search": ("查找", "Search"),
    "no_items": ("没有符合条件的事项：", "No item matches:"),
    "items_found": ("个事项", "items"),
    "item": ("事项", "Item"),
    "item_code": ("事项编码", "Item code"),
    "applicant_kind": ("申请人类型", "Applicant"),
    "kind_natural": ("自然人", "natural person"),
    "kind_legal": ("法人", "legal person"),
    "promised_days": ("承诺时限（天）", "Promised days"),
    "on_spot": ("即办", "settled on the spot"),
    "steps": ("办理环节", "Steps"),
    "choose": ("受理", "Accept"),
    "lookup": ("查询办件", "Look a case up"),
    "lookup_hint": ("受理编号或办件编号", "Receipt number or case id"),
    "lookup_go": ("查询", "Look up"),
    "no_case": ("没有找到该办件：", "No case found for:"),
    "applicant": ("申请人", "Applicant"),
    "name_natural": ("姓名", "Name"),
    "name_legal": ("单位名称", "Company name"),
    "id_natural": ("公民身份号码", "Resident ID number"),
    "id_legal": ("统一社会信用代码", "Unified social credit code"),
    "phone": ("手机号码", "Mobile phone"),
    "community_code": ("社区（村）代码", "Community code"),
    "form": ("申请材料", "Application form"),
    "yes": ("是", "yes"),
    "submit": ("提交受理", "Submit"),
    "errors_title": ("请修改以下内容：", "Please correct the following:"),
    "refused": ("操作未完成：", "Not done:"),
    "receipt": ("受理回执", "Receipt"),
    "receipt_no": ("受理编号", "Receipt number"),
    "case_id": ("办件编号", "Case id"),
    "accepted_at": ("受理时间", "Accepted"),
    "promised_date": ("承诺办结日期", "Promised by"),
    "unknown": ("未知", "unknown"),
    "centre": ("受理中心", "Centre"),
    "print": ("打印回执", "Print the receipt"),
    "back": ("返回", "Back"),
    "case_status": ("办件状态", "Case status"),
    "status": ("状态", "Status"),
    "summary": ("说明", "Summary"),
    "closed_at": ("办结时间", "Closed"),
    "refresh": ("刷新", "Refresh"),
    "new_case": ("受理新事项", "Accept another item"),
    "step_done": ("已通过", "approved"),
    "step_current": ("办理中", "in progress"),
    "step_waiting_info": ("待补充材料", "waiting for information"),
    "step_rejected": ("未通过", "rejected"),
    "step_pending": ("待办理", "waiting"),
    "step_not_reached": ("未进行", "not reached"),
    "st_accepted": ("已受理", "accepted"),
    "st_in_progress": ("办理中", "in progress"),
    "st_waiting_info": ("待补充材料", "waiting for information"),
    "st_closed": ("已办结", "closed"),
    "oc_approved": ("准予办理", "approved"),
    "oc_rejected": ("不予办理", "rejected"),
    "reason": ("原因", "Reason"),
    "my_intro": (
        "输入受理编号和证件号码后四位，我们将向办件预留的手机发送验证码。",
        "Enter the receipt number and the last four characters of the ID number; we send "
        "a code to the phone given on the case.",
    ),
    "id_last4": ("证件号码后四位", "Last four characters of the ID number"),
    "get_code": ("获取验证码", "Send me a code"),
    "code": ("验证码（6位数字）", "Code (6 digits)"),
    "see_case": ("查看办件", "See my case"),
    "start_over": ("重新查询", "Check another case"),
    "progress": ("办理进度", "Progress"),
    "forbidden": (
        "请求被拒绝（表单已过期），请重试。",
        "Request refused (the form expired); try again.",
    ),
    "not_found": ("页面不存在。", "No such page."),
    # The dashboard (/desk/) and the window's community page.
    "desk": ("统计与核验", "Dashboard"),
    "not_desk": (
        "该账号不是审计人员、中心负责人或管理员，无法使用统计页面。",
        "This account is not an auditor's, a centre head's or an admin's; the dashboard "
        "is for them.",
    ),
    "scope_all": ("全部受理中心", "All centres"),
    "scope_centre": ("本中心", "This centre"),
    "audit_off": (
        "未配置审计服务地址（ONEDOOR_AUDIT_URL），无法显示统计。",
        "The audit service's address is not configured (ONEDOOR_AUDIT_URL): no figures.",
    ),
    "audit_down": (
        "审计服务暂不可用，请稍后刷新：",
        "The audit service is not answering; refresh later:",
    ),
    "no_charts": (
        "图表库（libjs-chart.js）未安装，以下只显示数字表格。",
        "The chart library (libjs-chart.js) is not installed: the figures are shown as tables.",
    ),
    "verification": ("最近一次核验", "Last verification"),
    "no_run": ("尚无核验记录。", "No verify run yet."),
    "run_failed": ("最近一次核验未能完成：", "The last verify run did not finish:"),
    "zero_violations": ("零违规", "zero violations"),
    "violations": ("违规", "violations"),
    "flags": ("提示（非违规）", "flags (not errors)"),
    "run_at": ("核验完成时间", "Verified at"),
    "records": ("日志记录数", "records read"),
    "cases_n": ("办件数", "cases"),
    "v_kind": ("类型", "Kind"),
    "v_place": ("日志位置", "Place in the log"),
    "v_event": ("事件", "Event"),
    "v_detail": ("说明", "Detail"),
    "download_csv": ("下载 CSV", "Download CSV"),
    "figures": ("数据", "Figures"),
    "total": ("合计", "Total"),
    "on_spot_share": ("即办率", "On-the-spot share"),
    "ch_per_day_department": ("每日受理量（按部门）", "Cases per day by department"),
    "ch_per_day_department_about": (
        "按受理日（北京时间）统计，多环节办件在每个经办部门下各计一次。",
        "By day of acceptance (China time); a multi-step case counts once under each of "
        "its departments.",
    ),
    "ch_on_spot": ("即办情况", "Settled on the spot"),
    "ch_on_spot_about": (
        "即办率 = 当场办结数 ÷ 已办结数。",
        "On-the-spot share = closed on the spot ÷ all closed cases.",
    ),
    "ch_close_time": ("受理至办结用时分布", "Accept-to-close time"),
    "ch_close_time_about": ("已办结办件按用时分段计数。", "Closed cases by how long they took."),
    "ch_due": ("未办结办件与承诺时限", "Open cases against their promised date"),
    "ch_due_about": (
        "“临近”指距承诺办结时间不足48小时，待补充材料的办件不计超期。",
        "Near: less than 48 hours to the promised date; a case waiting for the applicant's "
        "information is never counted late.",
    ),
    "ch_per_community": ("各社区办件量", "Cases per community"),
    "ch_per_community_about": ("按申请人所在社区（村）统计。", "By the applicant's community."),
    "ch_per_item": ("按事项和状态", "By item and status"),
    "ch_per_item_about": (
        "本社区办件按事项和当前状态计数。",
        "This community's cases by item and status now.",
    ),
    "ch_per_day": ("每日受理量", "Cases per day"),
    "ch_per_day_about": (
        "按受理日（北京时间）和当前状态。",
        "By day of acceptance (China time) and status now.",
    ),
    "late_cases": ("超期及临近承诺时限的办件", "Cases past or near their promised date"),
    "none_late": ("没有超期或临近时限的办件。", "No case is past or near its promised date."),
    "community": ("社区", "Community"),
    "communities": ("社区办件", "Communities"),
    "pick_community": ("选择社区", "Pick a community"),
    "no_communities": ("本中心暂无办件。", "No cases at this centre yet."),
    "open_community": ("查看", "Open"),
    "lb_on_spot": ("当场办结", "closed on the spot"),
    "lb_closed_later": ("其他已办结", "closed later"),
    "lb_open": ("未办结", "open"),
    "lb_cases": ("办件数", "cases"),
    "lb_past": ("已超期", "past promised date"),
    "lb_near": ("临近时限", "near promised date"),
    "lb_later": ("未临近", "not yet due"),
    "lb_waiting_info": ("待补充材料", "waiting for information"),
    "lb_no_date": ("无承诺时限", "no promised date"),
    "lb_lt_1m": ("1分钟内", "under 1 minute"),
    "lb_1m_10m": ("1-10分钟", "1-10 minutes"),
    "lb_10m_1h": ("10分钟-1小时", "10 minutes-1 hour"),
    "lb_1h_1d": ("1小时-1天", "1 hour-1 day"),
    "lb_1d_3d": ("1-3天", "1-3 days"),
    "lb_3d_10d": ("3-10天", "3-10 days"),
    "lb_ge_10d": ("10天以上", "10 days or more"),
    "lb_approved": ("准予办理", "approved"),
    "lb_rejected": ("不予办理", "rejected"),
    "lb_no_department": ("未分派部门", "no department"),
}


def text(key: str, lang: str) -> str:
    """The words for ``key`` in ``lang`` (the key itself if the table lacks it)."""
    pair = TEXTS.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The page language: the switch's cookie, else the browser's first choice when that
    is English, else Simplified Chinese."""
    if cookie in LANGUAGES:
        return cookie
    first = (accept_language or "").split(",", 1)[0].strip().lower()
    return "en" if first.startswith("en") else DEFAULT


def local_date(value: date | datetime | str | None, lang: str) -> str:
    """``2026年12月6日`` in Chinese, ``2026-12-06`` in English; a moment is first put in
    the centre's local time."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.astimezone(LOCAL).date()
    if lang == "en":
        return value.isoformat()
    return f"{value.year}年{value.month}月{value.day}日"


def local_time(value: datetime | str | None, lang: str) -> str:
    """A moment as a local date and a 24-hour time (``2026年12月6日 14:05``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    moment = value.astimezone(LOCAL)
    return f"{local_date(moment, lang)} {moment:%H:%M}"
