"""The console's two languages: every string the pages show, in English and Chinese.  The language
is the ``pgmind_lang`` cookie (the switch in the header), else the browser's Accept-Language."""
from __future__ import annotations

from fastapi import Request

LANGUAGES = ("en", "zh")
COOKIE = "pgmind_lang"

# key: (English, Chinese).  tests/test_console_units.py checks that both are filled in.
MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("pgmind console", "pgmind 控制台"),
    "signin": ("Sign in", "登录"),
    "signout": ("Sign out", "退出"),
    "api_key": ("API key", "API 密钥"),
    "signin_help": ("Sign in with an API key made by an administrator: select ai.create_api_key('<role>'). "
                    "You act as that role and never more.",
                    "使用管理员创建的 API 密钥登录:select ai.create_api_key('<角色>')。您将以该角色的权限操作,不会多于该角色。"),
    "signed_in_as": ("Signed in as", "当前角色"),
    "admin": ("administrator", "管理员"),
    "bad_key": ("This API key is unknown or revoked.", "此 API 密钥不存在或已被吊销。"),
    "bad_key_hint": ("Ask an administrator for a new one: select ai.create_api_key('<role>').",
                     "请管理员新建一个:select ai.create_api_key('<角色>')。"),
    "too_many": ("Too many sign-in attempts from this address.", "此地址的登录尝试次数过多。"),
    "too_many_hint": ("Wait {seconds} seconds and try again.", "请等待 {seconds} 秒后再试。"),
    "signed_out": ("You are signed out.", "您已退出。"),
    "session_gone": ("Your session has ended. Sign in again.", "会话已结束,请重新登录。"),
    "csrf": ("This request did not come from a console page.", "此请求并非来自控制台页面。"),
    "csrf_hint": ("Reload the page and try again.", "请刷新页面后重试。"),
    "kbs": ("Knowledge bases", "知识库"),
    "kb": ("Knowledge base", "知识库"),
    "no_kbs": ("No knowledge base that this role may see.", "此角色没有可见的知识库。"),
    "no_kbs_hint": ("Make one with pgmind ingest <folder> <name>, or select ai.create_vectorizer(...).",
                    "用 pgmind ingest <目录> <名称> 或 select ai.create_vectorizer(...) 创建一个。"),
    "name": ("Name", "名称"),
    "source": ("Source", "来源"),
    "model": ("Model", "模型"),
    "chunking": ("Chunking", "分块"),
    "version": ("Version", "版本"),
    "status": ("Status", "状态"),
    "rows": ("Rows", "行数"),
    "pending": ("Pending", "排队中"),
    "in_progress": ("In progress", "处理中"),
    "done": ("Done", "已完成"),
    "quarantined": ("Quarantined", "已隔离"),
    "throughput": ("Rows per second", "每秒行数"),
    "eta": ("ETA", "预计剩余"),
    "last_error": ("Last error", "最近错误"),
    "paused": ("Paused", "已暂停"),
    "active": ("active", "使用中"),
    "building": ("building", "构建中"),
    "documents": ("Documents", "文档"),
    "document": ("Document", "文档"),
    "key": ("Key", "键"),
    "state": ("State", "状态"),
    "first_chunk": ("Beginning", "开头"),
    "sqlstate": ("SQLSTATE", "SQLSTATE"),
    "message": ("Message", "信息"),
    "hint": ("Hint", "提示"),
    "attempts": ("Attempts", "尝试次数"),
    "failed_at": ("Failed at", "失败时间"),
    "queued_at": ("Queued at", "排队时间"),
    "retry": ("Retry", "重试"),
    "retry_all": ("Retry all quarantined", "重试全部已隔离"),
    "delete": ("Delete", "删除"),
    "delete_confirm": ("Delete this document from the source table?", "从来源表删除此文档?"),
    "pause": ("Pause", "暂停"),
    "resume": ("Resume", "恢复"),
    "no_pause": ("Pausing needs ai.pause_vectorizer, which this database does not have yet.",
                 "暂停需要 ai.pause_vectorizer,此数据库尚未安装。"),
    "no_pause_hint": ("Upgrade with pgmind install.", "请运行 pgmind install 升级。"),
    "requeued": ("{n} documents queued again.", "已重新排队 {n} 个文档。"),
    "deleted": ("Document deleted.", "文档已删除。"),
    "next_page": ("Next page", "下一页"),
    "first_page": ("First page", "第一页"),
    "none_here": ("Nothing here.", "这里没有内容。"),
    "no_chunks_right": ("The documents list needs select on the chunk table.", "查看文档列表需要对分块表的 select 权限。"),
    "hit_test": ("Hit test", "命中测试"),
    "question": ("Question", "问题"),
    "mode": ("Mode", "模式"),
    "vector": ("vector", "向量"),
    "keyword": ("keyword", "关键词"),
    "hybrid": ("hybrid", "混合"),
    "expand": ("hybrid with expansion", "混合 + 扩展"),
    "k": ("Results (k)", "结果数 (k)"),
    "filter": ("Filter (column=value, one per line)", "过滤 (列=值,每行一个)"),
    "search": ("Search", "搜索"),
    "config_a": ("Configuration A", "配置 A"),
    "config_b": ("Configuration B", "配置 B"),
    "compare": ("Compare with a second configuration", "与第二个配置对比"),
    "score": ("Score", "得分"),
    "similarity": ("Similarity", "相似度"),
    "vector_rank": ("Vector rank", "向量排名"),
    "keyword_rank": ("Keyword rank", "关键词排名"),
    "chunk": ("Chunk", "分块"),
    "open_doc": ("Open the document", "打开文档"),
    "no_hits": ("No hits.", "没有命中。"),
    "ranks_note": ("This database's ai.search reports only the vector and keyword ranks that were fused; "
                   "a newer one reports every list's (pgmind install upgrades it).",
                   "此数据库的 ai.search 只返回参与融合的向量与关键词排名;新版返回每个列表的排名(运行 pgmind install 升级)。"),
    "ask": ("Ask", "提问"),
    "ask_button": ("Ask", "提问"),
    "sources": ("Sources", "来源"),
    "answer": ("Answer", "回答"),
    "declined": ("Declined", "拒绝回答"),
    "decline_reason": ("Why it declined", "拒绝原因"),
    "topic_score": ("Topic score", "主题得分"),
    "best_similarity": ("Best similarity", "最佳相似度"),
    "threshold": ("Threshold", "阈值"),
    "writing": ("The model is writing…", "模型正在生成…"),
    "feedback": ("Feedback", "反馈"),
    "good": ("Good answer", "好回答"),
    "bad": ("Bad answer", "差回答"),
    "correction": ("Corrected answer (optional)", "修正后的回答(可选)"),
    "save_feedback": ("Save feedback", "保存反馈"),
    "feedback_saved": ("Feedback saved.", "反馈已保存。"),
    "export": ("Export feedback as a pgmind eval file", "导出反馈为 pgmind eval 文件"),
    "confidence": ("Confidence", "可信度"),
    "error": ("Error", "错误"),
    "not_found": ("No knowledge base of that name that you can see.", "没有您可见的同名知识库。"),
    "not_found_hint": ("The list shows every knowledge base your role may see.", "列表中是您的角色可见的全部知识库。"),
    "page_not_found": ("No such page.", "没有这个页面。"),
    "internal": ("Something went wrong on the server.", "服务器出错了。"),
    "internal_hint": ("See the model server's log.", "请查看模型服务器日志。"),
    "bad_input": ("The input cannot be used.", "输入无法使用。"),
    "language": ("中文", "English"),
    "back": ("Back", "返回"),
    "of": ("of", "/"),
    "new_kb": ("New knowledge base", "新建知识库"),
    "new_kb_help": ("Upload documents: they are read by the same code as pgmind ingest into a new table, "
                    "as your role, and embedded by the vectorizer workers.",
                    "上传文档:以您的角色、用与 pgmind ingest 相同的代码读入一个新表,再由向量化工作进程嵌入。"),
    "schema": ("Schema", "模式 (schema)"),
    "files": ("Files", "文件"),
    "file_limits": ("at most {n} files of {mb} MB each", "最多 {n} 个文件,每个不超过 {mb} MB"),
    "drop_here": ("Drop files on this box, or choose them.", "把文件拖到这里,或点击选择。"),
    "create": ("Create", "创建"),
    "no_schema": ("Your role may create tables in no schema.", "您的角色无权在任何模式中建表。"),
    "created": ("Created", "已创建"),
    "created_summary": ("{files} files received, {changed} documents stored; the workers embed them now.",
                        "收到 {files} 个文件,存入 {changed} 个文档;工作进程正在嵌入。"),
    "not_read": ("Files not read", "未读入的文件"),
    "not_read_hint": ("These files are stored nowhere: fix them and upload them again.",
                      "这些文件没有被保存:修正后请重新上传。"),
    "file": ("File", "文件"),
    "reason": ("Reason", "原因"),
    "failed": ("failed", "失败"),
    "skipped": ("skipped", "已跳过"),
    "watch_progress": ("See its progress", "查看进度"),
    "health": ("Health", "运行状况"),
    "database": ("Database", "数据库"),
    "up_for": ("up for", "已运行"),
    "model_server": ("Model server", "模型服务器"),
    "workers": ("Vectorizer workers", "向量化工作进程"),
    "no_workers": ("No worker has reported yet.", "还没有工作进程报告。"),
    "worker": ("Worker", "工作进程"),
    "host": ("Host", "主机"),
    "heartbeat": ("Last heartbeat", "最近心跳"),
    "silent_for": ("Silent for", "静默时长"),
    "queues": ("Queues", "队列"),
    "queue_lag": ("Oldest queued", "最早排队距今"),
    "training": ("Training jobs", "训练任务"),
    "kind": ("Kind", "类型"),
    "progress": ("Progress", "进度"),
    "models": ("Models", "模型"),
    "tested": ("Tested", "测试结果"),
    "provider": ("Provider", "提供方"),
    "credential": ("Credential", "凭据"),
    "dimensions": ("Dimensions", "维度"),
    "owner": ("Owner", "所有者"),
    "granted_to": ("Granted to", "授权给"),
    "test_model": ("Test this model", "测试此模型"),
}


def language(request: Request) -> str:
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    # the first language the browser lists that we have ("zh-CN,zh;q=0.9,en;q=0.8" → zh)
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


def translator(lang: str):
    index = LANGUAGES.index(lang) if lang in LANGUAGES else 0

    def t(key: str, **values) -> str:
        pair = MESSAGES.get(key)
        text = pair[index] if pair else key
        return text.format(**values) if values else text
    return t
